"""Ingest under more load than a process admits: 503 with Retry-After, nothing lost."""

from __future__ import annotations

import contextlib
import threading
import time

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from sqlalchemy import Engine, func, select

from app.config import Settings
from app.store.tables import Span
from tests import otlp
from tests.conftest import LiveService
from tests.held_export import finish, held_export, metric, wait_for

LIMIT = 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ingest_max_pending": LIMIT, "ingest_retry_after": 1})


def stored_traces(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(Span.trace_id).distinct()).scalars())


def span_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Span)).scalar_one())


def batch(seed: int) -> tuple[str, bytes]:
    """One request's trace as an export body, with its trace id in hex."""
    spans = otlp.hybrid_trace(otlp.Ids(seed))
    return spans[0].trace_id.hex(), otlp.request(spans).SerializeToString()


def test_past_the_bound_batches_are_refused_with_retry_after_and_write_nothing(
    live: LiveService,
) -> None:
    key = live.key("shop", "ingest")
    held = [batch(seed) for seed in (1, 2)]
    refused = [batch(seed) for seed in range(10, 16)]
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(held_export(live.url, key, body)) for _, body in held]
        wait_for(lambda: metric(live.url, "warden_ingest_pending_batches") == LIMIT, "two held")
        answers: list[httpx.Response] = []

        def send(body: bytes) -> None:
            with live.client(key) as client:
                answers.append(client.post("/v1/traces", content=body, headers=otlp.PROTOBUF))

        threads = [threading.Thread(target=send, args=(body,)) for _, body in refused]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [a.status_code for a in answers] == [503] * len(refused)
        for answer in answers:
            assert answer.headers["retry-after"] == "1"
            # OTLP/HTTP: the error is a google.rpc.Status (UNAVAILABLE) in the request's encoding.
            assert answer.headers["content-type"] == "application/x-protobuf"
            status = status_pb2.Status()
            status.ParseFromString(answer.content)
            assert status.code == 14
            assert "nothing was stored" in status.message
        assert stored_traces(live.engine) == set()
        # Refused before the key is even read: a refusal costs no thread and no query.
        with live.client() as anonymous:
            answer = anonymous.post("/v1/traces", content=b"", headers=otlp.PROTOBUF)
            assert answer.status_code == 503
        # The held batches were admitted before the refusals: they are stored in full.
        assert [finish(sock, body) for sock, (_, body) in zip(socks, held, strict=True)] == [
            200,
            200,
        ]
    assert stored_traces(live.engine) == {trace for trace, _ in held}
    assert metric(live.url, "warden_ingest_refused_batches_total") == len(refused) + 1
    wait_for(lambda: metric(live.url, "warden_ingest_pending_batches") == 0, "all released")


def test_concurrent_clients_that_retry_store_every_batch_once(live: LiveService) -> None:
    """Eight clients at once against a bound of two: each answer is 200 or 503 with
    Retry-After; every 200 is stored at once, and every refused batch after its retry."""
    key = live.key("shop", "ingest")
    batches = [batch(seed) for seed in range(100, 132)]
    refusals: list[str] = []
    problems: list[str] = []
    lock = threading.Lock()

    def client_loop(n: int) -> None:
        with live.client(key) as client:
            for trace, body in batches[n::8]:
                while True:
                    answer = client.post("/v1/traces", content=body, headers=otlp.PROTOBUF)
                    if answer.status_code == 200:
                        if trace not in stored_traces(live.engine):
                            problems.append(f"{trace} answered 200 but is not stored")
                        break
                    if answer.status_code != 503 or "retry-after" not in answer.headers:
                        problems.append(f"{answer.status_code} {answer.headers}")
                        break
                    with lock:
                        refusals.append(trace)
                    # A tenth of the advised wait keeps the test short and the pressure on.
                    time.sleep(float(answer.headers["retry-after"]) / 10)

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    assert stored_traces(live.engine) == {trace for trace, _ in batches}
    assert span_count(live.engine) == 4 * len(batches)
    assert metric(live.url, "warden_ingest_refused_batches_total") == len(refusals)


def test_the_official_exporter_retries_a_refusal_and_delivers(live: LiveService) -> None:
    """OpenTelemetry's OTLP/HTTP exporter retries 503 after Retry-After: a batch refused
    while the bound is taken is delivered once a place is free."""
    key = live.key("shop", "ingest")
    exporter: SpanExporter = OTLPSpanExporter(
        endpoint=f"{live.url}/v1/traces", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    results: list[SpanExportResult] = []

    class Recording(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            result = exporter.export(spans)  # type: ignore[arg-type]
            results.append(result)
            return result

    provider = TracerProvider(resource=Resource.create({"service.name": "booking-api"}))
    provider.add_span_processor(SimpleSpanProcessor(Recording()))
    tracer = provider.get_tracer("tests")
    held = [batch(seed) for seed in (1, 2)]
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(held_export(live.url, key, body)) for _, body in held]
        wait_for(lambda: metric(live.url, "warden_ingest_pending_batches") == LIMIT, "two held")
        worker = threading.Thread(target=lambda: tracer.start_span("handle").end())
        worker.start()
        wait_for(lambda: metric(live.url, "warden_ingest_refused_batches_total") >= 1, "a refusal")
        assert [finish(sock, body) for sock, (_, body) in zip(socks, held, strict=True)] == [
            200,
            200,
        ]
        worker.join()
    provider.shutdown()
    assert results == [SpanExportResult.SUCCESS]
    assert span_count(live.engine) == 4 * 2 + 1
