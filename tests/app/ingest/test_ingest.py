"""OTLP/HTTP ingest against a live service, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from sqlalchemy import Engine, create_engine, func, select, text

from app.store.tables import (
    ModelVersion,
    PlannerDecision,
    PolicyEvaluation,
    Request,
    RequestModel,
    Span,
    WorldModelState,
)
from collectors import conventions as wire
from tests import otlp
from tests.conftest import LiveService, warden_serve


def count(engine: Engine, model: Any, **where: Any) -> int:
    query = select(func.count()).select_from(model)
    for column, wanted in where.items():
        query = query.where(getattr(model, column) == wanted)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def post(
    client: httpx.Client, body: bytes, headers: dict[str, str] = otlp.PROTOBUF
) -> httpx.Response:
    return client.post("/v1/traces", content=body, headers=headers)


def test_official_exporter_spans_come_back_with_attributes(live: LiveService) -> None:
    key = live.key("shop", "ingest", "read")
    exporter = OTLPSpanExporter(
        endpoint=f"{live.url}/v1/traces", headers={"Authorization": f"Bearer {key}"}
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "booking-api"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span(
        "handle", attributes={wire.REQUEST_FINGERPRINT: "f00d", "custom.count": 3}
    ) as root:
        root.set_attribute(wire.model_name("planner"), "mpc")
        root.set_attribute(wire.model_version("planner"), "7")
        with tracer.start_as_current_span("child", attributes={"ratio": 0.5, "tags": ["a", "b"]}):
            pass
    provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")

    with live.client(key) as client:
        detail = client.get(f"/v1/requests/{trace_id}").raise_for_status().json()
    assert detail["fingerprint"] == "f00d"
    assert detail["service_name"] == "booking-api"
    assert detail["models"] == {"planner": {"name": "mpc", "version": "7"}}
    by_name = {s["name"]: s for s in detail["spans"]}
    assert by_name["handle"]["attributes"]["custom.count"] == 3
    assert by_name["child"]["attributes"] == {"ratio": 0.5, "tags": ["a", "b"]}
    assert by_name["child"]["parent_span_id"] == by_name["handle"]["span_id"]
    assert detail["span_tree"][0]["children"][0]["name"] == "child"
    # Stored under the key's project, not another.
    other = live.key("other", "read")
    with live.client(other) as client:
        assert client.get(f"/v1/requests/{trace_id}").status_code == 404


def test_json_and_gzip_bodies_are_normalised_into_typed_rows(live: LiveService) -> None:
    key = live.key("shop", "ingest", "read")
    ids = otlp.Ids(1)
    json_trace = otlp.hybrid_trace(ids)
    gzip_trace = otlp.hybrid_trace(
        ids, start=1_700_000_001_000_000_000, **{wire.REQUEST_SUBJECT: "u-1"}
    )
    with live.client(key) as client:
        answer = client.post("/v1/traces", json=otlp.to_json(otlp.request(json_trace)))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        assert "partialSuccess" not in answer.json()
        answer = post(
            client,
            otlp.gzipped(otlp.request(gzip_trace).SerializeToString()),
            {**otlp.PROTOBUF, "Content-Encoding": "gzip"},
        )
        assert answer.status_code == 200, answer.text
        assert not otlp.parse_response(answer.content).HasField("partial_success")

        for trace in (json_trace, gzip_trace):
            trace_id = trace[0].trace_id.hex()
            detail = client.get(f"/v1/requests/{trace_id}").raise_for_status().json()
            assert len(detail["spans"]) == 4
            assert len(detail["states"]) == 16
            assert {(s["step"], s["layer"]) for s in detail["states"]} == {
                (step, layer) for step in range(8) for layer in ("encoder", "transition")
            }
            assert detail["states"][0]["projection"] == [i / 16 for i in range(16)]
            assert detail["states"][0]["l2_norm"] == 3.5
            (decision,) = detail["decisions"]
            assert decision["chosen"] == "room-a@15:00"
            assert [c["action"] for c in decision["candidates"]] == ["room-a@15:00", "room-b@15:00"]
            assert decision["constraints"] == ["capacity>=6"]
            (evaluation,) = detail["policy_evaluations"]
            assert (evaluation["policy_id"], evaluation["outcome"]) == ("risk-cap", "allow")
            assert detail["models"]["world_model"] == {
                "name": "booking-world-model",
                "version": "3",
            }
        assert client.get(f"/v1/requests/{gzip_trace[0].trace_id.hex()}").json()["subject"] == "u-1"
    assert count(live.engine, ModelVersion) == 3
    assert count(live.engine, RequestModel) == 6


def test_sending_the_same_batch_twice_stores_each_span_once(live: LiveService) -> None:
    key = live.key("shop", "ingest")
    body = otlp.request(
        otlp.hybrid_trace(otlp.Ids(2)) + otlp.hybrid_trace(otlp.Ids(3))
    ).SerializeToString()
    with live.client(key) as client:
        for _ in range(3):
            answer = post(client, body)
            assert answer.status_code == 200
            assert not otlp.parse_response(answer.content).HasField("partial_success")
    assert count(live.engine, Span) == 8
    assert count(live.engine, Request) == 2
    assert count(live.engine, WorldModelState) == 32
    assert count(live.engine, PlannerDecision) == 2
    assert count(live.engine, PolicyEvaluation) == 2


def test_same_ids_with_another_body_keep_the_first_and_count_the_conflict(
    live: LiveService,
) -> None:
    key = live.key("shop", "ingest", "read")
    ids = otlp.Ids(4)
    trace, root = ids.trace(), ids.span()
    first = otlp.span(trace, root, "request", attrs={wire.REQUEST_OUTCOME: "booked"})
    forged = otlp.span(trace, root, "request", attrs={wire.REQUEST_OUTCOME: "denied"})
    with live.client(key) as client:
        assert post(client, otlp.request([first]).SerializeToString()).status_code == 200
        answer = post(client, otlp.request([forged]).SerializeToString())
        assert answer.status_code == 200
        partial = otlp.parse_response(answer.content).partial_success
        assert partial.rejected_spans == 1
        assert "different body" in partial.error_message
        detail = client.get(f"/v1/requests/{trace.hex()}").json()
        metrics = client.get("/metrics").text
    assert detail["outcome"] == "booked"
    assert count(live.engine, Span) == 1
    assert 'warden_rejected_spans_total{reason="conflict"} 1.0' in metrics


def test_conflicts_inside_one_batch_are_counted_too(live: LiveService) -> None:
    key = live.key("shop", "ingest")
    ids = otlp.Ids(5)
    trace, sid = ids.trace(), ids.span()
    a = otlp.span(trace, sid, "request", attrs={"n": 1})
    b = otlp.span(trace, sid, "request", attrs={"n": 2})
    with live.client(key) as client:
        answer = post(client, otlp.request([a, a, b]).SerializeToString())
    assert otlp.parse_response(answer.content).partial_success.rejected_spans == 1
    assert count(live.engine, Span) == 1


def test_deduplication_is_per_project(live: LiveService) -> None:
    key_a = live.key("alpha", "ingest", "read")
    key_b = live.key("beta", "ingest", "read")
    trace = otlp.hybrid_trace(otlp.Ids(6))
    body_a = otlp.request(trace).SerializeToString()
    trace[0].attributes.extend(otlp.kvs({"sent.by": "beta"}))
    body_b = otlp.request(trace).SerializeToString()
    with live.client(key_a) as a, live.client(key_b) as b:
        assert post(a, body_a).status_code == 200
        answer = post(b, body_b)
        assert answer.status_code == 200
        assert not otlp.parse_response(answer.content).HasField("partial_success")
        trace_id = trace[0].trace_id.hex()
        seen_by_a = a.get(f"/v1/requests/{trace_id}").json()
        seen_by_b = b.get(f"/v1/requests/{trace_id}").json()
    root = lambda d: next(s for s in d["spans"] if s["name"] == "request")  # noqa: E731
    assert "sent.by" not in root(seen_by_a)["attributes"]
    assert root(seen_by_b)["attributes"]["sent.by"] == "beta"
    assert count(live.engine, Span) == 8


def test_invalid_span_ids_are_rejected_alone_with_partial_success(live: LiveService) -> None:
    key = live.key("shop", "ingest")
    ids = otlp.Ids(7)
    good = otlp.span(ids.trace(), ids.span(), "good")
    bad = otlp.span(b"\x01" * 5, ids.span(), "short-trace-id")
    with live.client(key) as client:
        answer = post(client, otlp.request([good, bad]).SerializeToString())
    assert answer.status_code == 200
    partial = otlp.parse_response(answer.content).partial_success
    assert partial.rejected_spans == 1
    assert "trace_id must be 16 bytes" in partial.error_message
    assert count(live.engine, Span) == 1


def _status(answer: httpx.Response) -> str:
    if answer.headers["content-type"].startswith("application/x-protobuf"):
        status = status_pb2.Status()
        status.ParseFromString(answer.content)
        return str(status.message)
    body = answer.json()
    return str(body.get("message") or body.get("detail"))


@pytest.mark.parametrize(
    ("body", "headers", "code", "message"),
    [
        (b"\xff\xff\xff garbage", otlp.PROTOBUF, 400, "malformed OTLP protobuf"),
        (b'{"resourceSpans": [', otlp.JSON, 400, "malformed JSON"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            otlp.JSON,
            400,
            "not a hex string",
        ),
        (b'{"resourceSpans": 5}', otlp.JSON, 400, "must be a list"),
        (b"hello", {"Content-Type": "text/plain"}, 415, "unsupported content type"),
        (
            b"\x1f\x8b not gzip",
            {**otlp.PROTOBUF, "Content-Encoding": "gzip"},
            400,
            "not valid gzip",
        ),
        (b"x", {**otlp.PROTOBUF, "Content-Encoding": "br"}, 415, "unsupported content encoding"),
    ],
)
def test_bad_bodies_get_a_clear_4xx_and_write_nothing(
    live: LiveService, body: bytes, headers: dict[str, str], code: int, message: str
) -> None:
    key = live.key("shop", "ingest")
    with live.client(key) as client:
        answer = post(client, body, headers)
    assert answer.status_code == code
    assert message in _status(answer)
    assert count(live.engine, Span) == 0


def test_protobuf_errors_are_google_rpc_status(live: LiveService) -> None:
    key = live.key("shop", "ingest")
    with live.client(key) as client:
        answer = post(client, b"\xff\xff\xff")
    assert answer.headers["content-type"] == "application/x-protobuf"
    status = status_pb2.Status()
    status.ParseFromString(answer.content)
    assert status.code == 3  # INVALID_ARGUMENT
    assert status.message.startswith("malformed OTLP protobuf")


def test_over_the_payload_limit_is_413(live: LiveService) -> None:
    key = live.key("shop", "ingest")
    limit = live.settings.payload_limit_bytes
    spans = otlp.hybrid_trace(otlp.Ids(8))
    spans[0].attributes.extend(otlp.kvs({"blob": "x" * (limit + 10)}))
    body = otlp.request(spans).SerializeToString()
    with live.client(key) as client:
        assert post(client, body).status_code == 413
        # A small gzip body that inflates past the limit is refused the same way.
        bomb = otlp.gzipped(body)
        assert len(bomb) < limit
        answer = post(client, bomb, {**otlp.PROTOBUF, "Content-Encoding": "gzip"})
        assert answer.status_code == 413
        assert "decompressed" in _status(answer)
    assert count(live.engine, Span) == 0


@pytest.mark.parametrize(
    ("authorization", "code", "message"),
    [
        (None, 401, "missing API key"),
        ("Basic abc", 401, "expected 'Bearer <key>'"),
        ("Bearer wdn_notakey", 401, "mistyped"),
    ],
)
def test_missing_or_malformed_keys_are_401(
    live: LiveService, authorization: str | None, code: int, message: str
) -> None:
    headers = dict(otlp.PROTOBUF)
    if authorization:
        headers["Authorization"] = authorization
    body = otlp.request(otlp.hybrid_trace(otlp.Ids(9))).SerializeToString()
    with httpx.Client(base_url=live.url) as client:
        answer = client.post("/v1/traces", content=body, headers=headers)
    assert answer.status_code == code
    assert message in _status(answer)
    assert count(live.engine, Span) == 0


def test_revoked_unknown_and_unscoped_keys(live: LiveService) -> None:
    from app.tenancy import projects

    body = otlp.request(otlp.hybrid_trace(otlp.Ids(10))).SerializeToString()
    reader = live.key("shop", "read")
    ingester = live.key("shop", "ingest")
    # A well-formed key (valid checksum) that was never issued here.
    from app.tenancy import keys

    stranger = keys.generate()
    with live.client(reader) as client:
        answer = post(client, body)
        assert answer.status_code == 403
        assert "lacks the 'ingest' scope" in _status(answer)
    with live.client(stranger) as client:
        assert post(client, body).status_code == 401
    projects.revoke_key(live.engine, keys.key_id(ingester))
    with live.client(ingester) as client:
        answer = post(client, body)
        assert answer.status_code == 401
        assert "revoked" in _status(answer)
    assert count(live.engine, Span) == 0


def test_a_batch_that_fails_midway_writes_nothing(live: LiveService) -> None:
    """A real database error after the spans are inserted rolls the whole batch back."""
    key = live.key("shop", "ingest")
    if live.engine.dialect.name == "sqlite":
        ddl = [
            "CREATE TRIGGER refuse BEFORE INSERT ON planner_decisions "
            "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
        ]
        drop = "DROP TRIGGER refuse"
    else:
        ddl = [
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'refused by test trigger'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse BEFORE INSERT ON planner_decisions "
            "FOR EACH ROW EXECUTE FUNCTION refuse()",
        ]
        drop = "DROP TRIGGER refuse ON planner_decisions"
    with live.engine.begin() as conn:
        for statement in ddl:
            conn.execute(text(statement))
    body = otlp.request(otlp.hybrid_trace(otlp.Ids(11))).SerializeToString()
    with live.client(key) as client:
        answer = post(client, body)
        assert answer.status_code >= 500
        for model in (Span, Request, WorldModelState, ModelVersion, RequestModel):
            assert count(live.engine, model) == 0, model.__tablename__
        with live.engine.begin() as conn:
            conn.execute(text(drop))
        assert post(client, body).status_code == 200
    assert count(live.engine, Span) == 4
    assert count(live.engine, PlannerDecision) == 1


def test_concurrent_writers_never_fail_or_deadlock(live: LiveService) -> None:
    """Eight clients send overlapping batches in different orders at the same time."""
    key = live.key("shop", "ingest")
    traces = [otlp.hybrid_trace(otlp.Ids(100 + i)) for i in range(24)]
    errors: list[str] = []

    def client_loop(n: int) -> None:
        order = traces[n % 3 :] + traces[: n % 3]
        if n % 2:
            order = list(reversed(order))
        with live.client(key) as client:
            for i in range(0, len(order), 4):
                spans = [s for trace in order[i : i + 4] for s in trace]
                if n % 2:
                    spans.reverse()
                answer = post(client, otlp.request(spans).SerializeToString())
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code} {answer.text}")

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(live.engine, Span) == 24 * 4
    assert count(live.engine, Request) == 24
    assert count(live.engine, WorldModelState) == 24 * 16


def test_acknowledged_batches_survive_a_killed_server(tmp_path: Path, database_url: str) -> None:
    """`warden serve` as a real process, killed with SIGKILL right after acknowledging."""
    bodies = [
        otlp.request(otlp.hybrid_trace(otlp.Ids(200 + i))).SerializeToString() for i in range(5)
    ]
    with warden_serve(tmp_path, database_url) as server:
        with httpx.Client(base_url=server.url, headers=_bearer(server.key)) as client:
            for body in bodies:
                assert post(client, body).status_code == 200
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
    engine = create_engine(database_url)
    try:
        assert count(engine, Span) == 20
        assert count(engine, Request) == 5
    finally:
        engine.dispose()


def test_several_server_processes_share_one_database(tmp_path: Path, database_url: str) -> None:
    """Two worker processes, eight concurrent clients: every batch lands, none fails."""
    traces = [otlp.hybrid_trace(otlp.Ids(300 + i)) for i in range(64)]
    bodies = [
        otlp.request([s for t in traces[i : i + 4] for s in t]).SerializeToString()
        for i in range(0, 64, 4)
    ]
    answers: list[int] = []
    with warden_serve(tmp_path, database_url, "--workers", "2") as server:

        def send(part: list[bytes]) -> None:
            with httpx.Client(base_url=server.url, headers=_bearer(server.key)) as client:
                answers.extend(post(client, body).status_code for body in part)

        threads = [threading.Thread(target=send, args=(bodies[n::8] * 2,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert answers == [200] * 32
    engine = create_engine(database_url)
    try:
        assert count(engine, Span) == 64 * 4
        assert count(engine, Request) == 64
        assert count(engine, WorldModelState) == 64 * 16
    finally:
        engine.dispose()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
