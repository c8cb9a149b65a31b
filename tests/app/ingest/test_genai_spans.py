"""Spans of any OpenTelemetry client that follow the GenAI conventions, sent by the official
OpenTelemetry SDK and its OTLP/HTTP exporter to a real Warden: the language-model stage of the
request (its version in lineage, the request's `models` and the Models page), its tokens and
cost per request and per version, its prompt, completion and finish reasons on the request's
page, and the documents a retrieval step returned."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from sqlalchemy import select

from app.audit import erasure, heads, retention
from app.audit.verify import verify_bundle
from app.experiments import settings as experiment_settings
from app.store.engine import read_connection
from app.store.tables import ModelVersion, Project, Span
from collectors import conventions as wire
from tests.app.dashboard.browsing import UiClient
from tests.conftest import LiveService

ASKED, ANSWERED = "gpt-4o-mini", "gpt-4o-mini-2024-07-18"
PRICE = {"input_per_1k_tokens": 0.15, "output_per_1k_tokens": 0.6}
PROMPT = "Book a room for 6 people tomorrow at 3pm"
COMPLETION = '{"people": 6, "start": "15:00"}'
DOCUMENTS = [
    {"id": "faq-rooms-12", "score": 0.83, "version": "4", "digest": "sha256:9f2c41"},
    {"id": "policy-capacity", "score": 0.61, "version": "2026-11"},
]


@contextmanager
def otel_tracer(live: LiveService, key: str, batched: bool) -> Iterator[Tracer]:
    """A tracer of the official SDK exporting to the live service; every span is sent when
    the block ends (`SimpleSpanProcessor`: one export per span, children before their root;
    `BatchSpanProcessor`: the trace in one export)."""
    exporter = OTLPSpanExporter(
        endpoint=f"{live.url}/v1/traces", headers={"Authorization": f"Bearer {key}"}
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "rag-bot"}))
    processor: SpanProcessor = (
        BatchSpanProcessor(exporter) if batched else SimpleSpanProcessor(exporter)
    )
    provider.add_span_processor(processor)
    try:
        yield provider.get_tracer("tests.genai")
    finally:
        provider.shutdown()


def price_the_model(live: LiveService, project: str) -> None:
    with read_connection(live.engine) as conn:
        pid = conn.execute(select(Project.id).where(Project.name == project)).scalar_one()
    experiment_settings.update_settings(live.engine, pid, {"prices": {ASKED: PRICE}})


def rag_request(tracer: Tracer, **root_attributes: Any) -> str:
    """A plain OTel application: a root span, a retrieval span, a chat span with the current
    GenAI attributes. Returns the trace id."""
    with tracer.start_as_current_span("answer", attributes=root_attributes) as root:
        with tracer.start_as_current_span(
            "retrieval",
            attributes={
                wire.GEN_AI_OPERATION_NAME: wire.RETRIEVAL_OPERATION,
                wire.GEN_AI_DATA_SOURCE_ID: "rooms-faq",
                wire.GEN_AI_RETRIEVAL_DOCUMENTS: json.dumps(DOCUMENTS),
            },
        ):
            pass
        with tracer.start_as_current_span(
            f"chat {ASKED}",
            kind=SpanKind.CLIENT,
            attributes={
                wire.GEN_AI_OPERATION_NAME: "chat",
                wire.GEN_AI_PROVIDER_NAME: "openai",
                wire.GEN_AI_REQUEST_MODEL: ASKED,
                wire.GEN_AI_RESPONSE_MODEL: ANSWERED,
                wire.GEN_AI_USAGE_INPUT_TOKENS: 1200,
                wire.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
                wire.GEN_AI_RESPONSE_FINISH_REASONS: ["stop"],
                wire.GEN_AI_INPUT_MESSAGES: json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}]
                ),
                wire.GEN_AI_OUTPUT_MESSAGES: json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": COMPLETION}],
                            "finish_reason": "stop",
                        }
                    ]
                ),
            },
        ):
            pass
    return format(root.get_span_context().trace_id, "032x")


def test_a_plain_otel_genai_span_is_the_requests_language_model_stage(live: LiveService) -> None:
    key = live.key("rag", "ingest", "read")
    price_the_model(live, "rag")
    # One export per span: the chat span is stored before its request exists.
    with otel_tracer(live, key, batched=False) as tracer:
        trace_id = rag_request(tracer)

    with live.client(key) as client:
        detail = client.get(f"/v1/requests/{trace_id}").raise_for_status().json()
        listed = client.get("/v1/requests", params={"model_name": ASKED}).json()["items"]
        models = client.get("/v1/models").raise_for_status().json()["items"]
        version = client.get(f"/v1/models/{ASKED}/versions/{ANSWERED}").raise_for_status()
    assert detail["models"] == {"llm": {"name": ASKED, "version": ANSWERED}}
    assert [r["request_id"] for r in listed] == [trace_id]
    cost = (1200 * 0.15 + 300 * 0.6) / 1000
    assert detail["usage"] == {
        "llm_calls": 1, "input_tokens": 1200, "output_tokens": 300, "cost": cost
    }  # fmt: skip
    (call,) = detail["llm_calls"]
    assert call["finish_reasons"] == ["stop"]
    assert call["input_messages"] == [{"role": "user", "content": PROMPT, "finish_reason": None}]
    assert call["output_messages"] == [
        {"role": "assistant", "content": COMPLETION, "finish_reason": "stop"}
    ]
    assert [(d["document_id"], d["document_version"], d["document_digest"], d["score"])
            for d in detail["retrievals"]] == [
        ("faq-rooms-12", "4", "sha256:9f2c41", 0.83), ("policy-capacity", "2026-11", None, 0.61)
    ]  # fmt: skip
    assert {d["data_source"] for d in detail["retrievals"]} == {"rooms-faq"}

    (llm,) = [m for m in models if m["name"] == ASKED]
    assert (llm["version"], llm["role"], llm["requests"]) == (ANSWERED, "llm", 1)
    assert llm["usage"] == detail["usage"]
    assert version.json()["usage"] == detail["usage"]

    ui = UiClient(live.url, key)
    try:
        page = html.unescape(ui.get(f"/ui/requests/{trace_id}").raise_for_status().text)
        models_page = ui.get("/ui/models").raise_for_status().text
    finally:
        ui.close()
    assert PROMPT in page and COMPLETION in page
    assert '<span class="badge finish-reason">stop</span>' in page
    assert '<span id="input-tokens">1,200</span>' in page
    assert '<span id="output-tokens">300</span>' in page
    assert f'<dd id="llm-cost">{cost:.4g}</dd>' in page
    assert "faq-rooms-12" in page and "sha256:9f2c41" in page and "policy-capacity" in page
    assert f'id="usage-{ASKED}-{ANSWERED}"' in models_page
    assert '<td class="num" data-usage="input_tokens">1,200</td>' in models_page


def test_the_requests_own_llm_version_wins_over_the_genai_model(live: LiveService) -> None:
    key = live.key("own", "ingest", "read")
    price_the_model(live, "own")
    # The whole trace in one export: the request and its call are stored together.
    with otel_tracer(live, key, batched=True) as tracer:
        trace_id = rag_request(
            tracer, **{wire.model_name("llm"): "intent-parser", wire.model_version("llm"): "3"}
        )

    with live.client(key) as client:
        detail = client.get(f"/v1/requests/{trace_id}").raise_for_status().json()
        models = client.get("/v1/models").raise_for_status().json()["items"]
    assert detail["models"] == {"llm": {"name": "intent-parser", "version": "3"}}
    assert [(m["name"], m["version"]) for m in models] == [("intent-parser", "3")]
    # The call is kept all the same, with its tokens and cost, for the request and the version.
    assert detail["usage"]["input_tokens"] == 1200
    assert models[0]["usage"] == detail["usage"]
    assert detail["llm_calls"][0]["response_model"] == ANSWERED


def test_a_trace_of_one_genai_span_in_one_export_names_its_stage(live: LiveService) -> None:
    key = live.key("solo", "ingest", "read")
    attributes = {wire.GEN_AI_REQUEST_MODEL: "llama-3.1-8b", wire.GEN_AI_USAGE_INPUT_TOKENS: 10}
    with (
        otel_tracer(live, key, batched=True) as tracer,
        tracer.start_as_current_span("chat", attributes=attributes) as span,
    ):
        pass
    trace_id = format(span.get_span_context().trace_id, "032x")
    with live.client(key) as client:
        detail = client.get(f"/v1/requests/{trace_id}").raise_for_status().json()
    assert detail["models"] == {"llm": {"name": "llama-3.1-8b", "version": "llama-3.1-8b"}}
    # No price for the model: tokens, and no cost.
    assert detail["usage"] == {
        "llm_calls": 1, "input_tokens": 10, "output_tokens": 0, "cost": None
    }  # fmt: skip


def test_earlier_forms_openllmetry_and_openinference(live: LiveService) -> None:
    """The per-message events of earlier GenAI conventions, OpenLLMetry's flattened prompt,
    and OpenInference's flattened retrieval documents, with the root sent last."""
    key = live.key("legacy", "ingest", "read")
    with (
        otel_tracer(live, key, batched=False) as tracer,
        tracer.start_as_current_span("answer") as root,
    ):
        with tracer.start_as_current_span(
            "retriever",
            attributes={
                wire.OPENINFERENCE_SPAN_KIND: "RETRIEVER",
                wire.OPENINFERENCE_DOCUMENT.format(index=0, field="id"): "doc-a",
                wire.OPENINFERENCE_DOCUMENT.format(index=0, field="score"): 0.9,
                wire.OPENINFERENCE_DOCUMENT.format(index=0, field="metadata"): json.dumps(
                    {"version": "7"}
                ),
                wire.OPENINFERENCE_DOCUMENT.format(index=1, field="id"): "doc-b",
            },
        ):
            pass
        with tracer.start_as_current_span(
            "openai.chat", attributes={wire.GEN_AI_REQUEST_MODEL: ASKED}
        ) as events_form:
            events_form.add_event(wire.GEN_AI_SYSTEM_MESSAGE_EVENT, {"content": "Be brief."})
            events_form.add_event(wire.GEN_AI_USER_MESSAGE_EVENT, {"content": PROMPT})
            events_form.add_event(
                wire.GEN_AI_CHOICE_EVENT,
                {"index": 0, "finish_reason": "length",
                 "message": json.dumps({"role": "assistant", "content": COMPLETION})},
            )  # fmt: skip
        with tracer.start_as_current_span(
            "openai.chat",
            attributes={
                wire.GEN_AI_REQUEST_MODEL: ASKED,
                wire.GEN_AI_PROMPT_FIELD.format(index=0, field="role"): "user",
                wire.GEN_AI_PROMPT_FIELD.format(index=0, field="content"): "second question",
                wire.GEN_AI_COMPLETION_FIELD.format(index=0, field="content"): "answer two",
                wire.GEN_AI_COMPLETION_FIELD.format(index=0, field="finish_reason"): "stop",
                wire.GEN_AI_USAGE_PROMPT_TOKENS: 5,
                wire.GEN_AI_USAGE_COMPLETION_TOKENS: 2,
            },
        ):
            pass
    trace_id = format(root.get_span_context().trace_id, "032x")
    with live.client(key) as client:
        detail = client.get(f"/v1/requests/{trace_id}").raise_for_status().json()
    assert detail["models"] == {"llm": {"name": ASKED, "version": ASKED}}
    first, second = detail["llm_calls"]
    assert [(m["role"], m["content"]) for m in first["input_messages"]] == [
        ("system", "Be brief."), ("user", PROMPT)
    ]  # fmt: skip
    assert first["output_messages"] == [
        {"role": "assistant", "content": COMPLETION, "finish_reason": "length"}
    ]
    assert first["finish_reasons"] == ["length"]
    assert second["input_messages"] == [
        {"role": "user", "content": "second question", "finish_reason": None}
    ]
    assert second["finish_reasons"] == ["stop"]
    assert (second["input_tokens"], second["output_tokens"]) == (5, 2)
    documents = [
        (d["document_id"], d["document_version"], d["score"]) for d in detail["retrievals"]
    ]
    assert documents == [("doc-a", "7", 0.9), ("doc-b", None, None)]


def test_the_stage_version_is_stored_once_in_the_model_index(live: LiveService) -> None:
    key = live.key("index", "ingest", "read")
    with otel_tracer(live, key, batched=False) as tracer:
        first = rag_request(tracer)
        second = rag_request(tracer)
    with read_connection(live.engine) as conn:
        rows = conn.execute(
            select(ModelVersion.name, ModelVersion.version, ModelVersion.role).where(
                ModelVersion.name == ASKED
            )
        ).all()
    assert [tuple(r) for r in rows] == [(ASKED, ANSWERED, "llm")]
    with live.client(key) as client:
        items = client.get("/v1/models").json()["items"]
    (llm,) = items
    assert llm["requests"] == 2 and llm["usage"]["input_tokens"] == 2400
    assert first != second


def test_retention_drops_prompts_and_keeps_tokens_and_documents(live: LiveService) -> None:
    key = live.key("kept", "ingest", "read")
    price_the_model(live, "kept")
    with otel_tracer(live, key, batched=True) as tracer:
        trace_id = rag_request(tracer)
    with read_connection(live.engine) as conn:
        pid = conn.execute(select(Project.id).where(Project.name == "kept")).scalar_one()
    retention.configure(live.engine, pid, {"days": 1}, "test")
    retention.apply(live.engine, "kept", datetime.now(UTC) + timedelta(days=2))

    with live.client(key) as client:
        detail = client.get(f"/v1/requests/{trace_id}").raise_for_status().json()
    (call,) = detail["llm_calls"]
    assert call["input_messages"] == call["output_messages"] == []
    assert detail["usage"]["input_tokens"] == 1200 and detail["usage"]["cost"] is not None
    assert detail["models"]["llm"] == {"name": ASKED, "version": ANSWERED}
    assert [d["document_id"] for d in detail["retrievals"]] == [d["id"] for d in DOCUMENTS]


def test_a_call_that_ends_after_its_request_keeps_usage_but_not_the_stage(
    live: LiveService,
) -> None:
    """The request's record and its ledger event are written together: a call exported
    after them cannot change the models they name."""
    key = live.key("late", "ingest", "read")
    with otel_tracer(live, key, batched=False) as tracer:
        root = tracer.start_span("answer")
        call = tracer.start_span(
            "chat",
            context=trace.set_span_in_context(root),
            attributes={wire.GEN_AI_REQUEST_MODEL: ASKED, wire.GEN_AI_USAGE_INPUT_TOKENS: 7},
        )
        root.end()  # exported now, alone
        call.end()
    trace_id = format(root.get_span_context().trace_id, "032x")
    with live.client(key) as client:
        detail = client.get(f"/v1/requests/{trace_id}").raise_for_status().json()
        models = client.get("/v1/models").raise_for_status().json()["items"]
    assert detail["models"] == {}
    assert detail["usage"]["input_tokens"] == 7
    assert models == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_export_of_genai_requests_verifies_offline(live: LiveService) -> None:
    """The `llm` stage a call gives its request is in the request's ledger event, so the
    request records of an export agree with the ledger."""
    key = live.key("audited", "ingest", "read")
    with otel_tracer(live, key, batched=False) as tracer:  # each call stored before its root
        first = rag_request(tracer)
    with otel_tracer(live, key, batched=True) as tracer:  # stored with its root
        second = rag_request(tracer)
    with live.client(live.key("audited", "admin")) as admin:
        job = admin.post("/v1/exports", json={"from": "2020-01-01T00:00:00Z"})
        assert job.status_code == 202, job.text
    with live.client(live.key("audited", "audit", "read")) as auditor:
        url = f"/v1/exports/{job.json()['id']}"
        status: dict[str, Any] = {}
        for _ in range(600):
            status = auditor.get(url).raise_for_status().json()
            if status["status"] in ("done", "failed"):
                break
            time.sleep(0.2)
        assert status["status"] == "done", status
        bundle = auditor.get(status["download"]).content
        key_pem = auditor.get("/v1/audit/public-key").json()["public_key_pem"]
        for trace_id in (first, second):
            detail = auditor.get(f"/v1/requests/{trace_id}").raise_for_status().json()
            assert detail["models"] == {"llm": {"name": ASKED, "version": ANSWERED}}
    verdict = verify_bundle(bundle, [heads.load_public_key(key_pem)])
    assert verdict.ok, verdict.summary()
    assert verdict.records == 2


def test_erasing_a_subject_clears_the_prompts_of_their_calls(live: LiveService) -> None:
    key = live.key("erased", "ingest", "read")
    price_the_model(live, "erased")
    with otel_tracer(live, key, batched=True) as tracer:
        anna = rag_request(tracer, **{wire.REQUEST_SUBJECT: "anna"})
        bob = rag_request(tracer, **{wire.REQUEST_SUBJECT: "bob"})
    with read_connection(live.engine) as conn:
        pid = conn.execute(select(Project.id).where(Project.name == "erased")).scalar_one()
    erasure.erase_subject(live.engine, pid, "anna", "dpo", "art. 17 request")

    def stored(trace_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        with live.client(key) as client:
            detail = client.get(f"/v1/requests/{trace_id}").raise_for_status().json()
        with read_connection(live.engine) as conn:
            attributes = conn.execute(
                select(Span.attributes).where(
                    Span.trace_id == trace_id, Span.name == f"chat {ASKED}"
                )
            ).scalar_one()
        return detail, attributes

    detail, attributes = stored(anna)
    (call,) = detail["llm_calls"]
    assert call["input_messages"] == call["output_messages"] == []
    assert wire.GEN_AI_INPUT_MESSAGES not in attributes
    assert wire.GEN_AI_OUTPUT_MESSAGES not in attributes
    assert PROMPT not in json.dumps(detail) and COMPLETION not in json.dumps(detail)
    # What the call cost, and which model answered, are about the call: they stay.
    assert detail["usage"]["input_tokens"] == 1200 and detail["usage"]["cost"] is not None
    assert detail["models"]["llm"] == {"name": ASKED, "version": ANSWERED}
    assert attributes[wire.GEN_AI_RESPONSE_MODEL] == ANSWERED
    # Another subject's call keeps its words.
    detail, attributes = stored(bob)
    assert PROMPT in json.dumps(detail["llm_calls"][0]["input_messages"])
    assert wire.GEN_AI_INPUT_MESSAGES in attributes
