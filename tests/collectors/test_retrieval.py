"""`collectors.retrieval()`: a retrieval step recorded by the SDK reaches the service as the
request's retrieved documents, beside the language-model call that used them."""

from __future__ import annotations

from pathlib import Path

import pytest

import collectors
from tests.collectors.test_sdk import init
from tests.conftest import LiveService


def test_a_retrieval_step_is_stored_with_its_documents(live: LiveService, tmp_path: Path) -> None:
    init(live, tmp_path)
    with collectors.request({"text": "can 6 people fit in room 7?"}) as req:
        with collectors.retrieval("rooms-faq@2026-11", query="room 7 capacity") as step:
            step.record(
                [
                    {"id": "faq-7", "score": 0.9, "version": "3", "digest": "sha256:ab12"},
                    {"id": 42, "score": 0.4},
                ]
            )
        with collectors.llm_call(system="offline", request_model="intent-parser") as call:
            call.record(response_model="intent-parser-2", input_tokens=40, output_tokens=8)
        trace_id = req.trace_id
    assert collectors.flush(10)

    with live.client(live.key("shop", "read")) as client:
        detail = client.get(f"/v1/requests/{trace_id}").raise_for_status().json()
    docs = [
        (d["data_source"], d["seq"], d["document_id"], d["document_version"],
         d["document_digest"], d["score"])
        for d in detail["retrievals"]
    ]  # fmt: skip
    assert docs == [
        ("rooms-faq@2026-11", 0, "faq-7", "3", "sha256:ab12", 0.9),
        ("rooms-faq@2026-11", 1, "42", None, None, 0.4),
    ]
    # The SDK's own call names the stage when `collectors.model("llm", ...)` did not.
    assert detail["models"]["llm"] == {"name": "intent-parser", "version": "intent-parser-2"}
    assert detail["usage"]["input_tokens"] == 40


def test_a_document_without_an_id_is_refused_where_it_is_recorded(
    live: LiveService, tmp_path: Path
) -> None:
    init(live, tmp_path)
    with (
        collectors.request({"text": "x"}),
        collectors.retrieval("rooms-faq") as step,
        pytest.raises(ValueError, match="needs an 'id'"),
    ):
        step.record([{"score": 0.3}])
