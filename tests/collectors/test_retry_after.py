"""The SDK under a service that refuses for a while: it waits as long as `Retry-After` says,
keeps every span it accepted on disk meanwhile, and delivers them all afterwards."""

from __future__ import annotations

import email.utils
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import func, select

import collectors
from app.config import Settings
from app.store.tables import Span
from tests.collectors.test_faults import one_request
from tests.conftest import LiveService
from tests.held_export import finish, held_export, metric, wait_for
from tests.otlp import Ids, hybrid_trace, request

SPANS_PER_REQUEST = 3  # one_request: root, LLM call, decision


class Arrival:
    def __init__(self, at: float, spans: int) -> None:
        self.at = at
        self.spans = spans


def refusing_server(
    refusals: list[tuple[int, Callable[[], str]]],
) -> tuple[http.server.ThreadingHTTPServer, list[Arrival]]:
    """An OTLP endpoint that answers the first exports with `refusals` (status, Retry-After
    made when answering), then 200; it records when each export arrived (wall clock) and how
    many spans it carried."""
    arrivals: list[Arrival] = []
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            message = ExportTraceServiceRequest()
            message.ParseFromString(body)
            spans = sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)
            with lock:
                arrivals.append(Arrival(time.time(), spans))
                answer = refusals[len(arrivals) - 1] if len(arrivals) <= len(refusals) else None
            if answer:
                self.send_response(answer[0])
                self.send_header("Retry-After", answer[1]())
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler), arrivals


@pytest.fixture
def serve() -> Iterator[Callable[[http.server.ThreadingHTTPServer], str]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(server: http.server.ThreadingHTTPServer) -> str:
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()


def test_an_http_date_and_then_seconds_are_each_waited_out(
    tmp_path: Path, serve: Callable[[http.server.ThreadingHTTPServer], str]
) -> None:
    """429 with an HTTP-date, then 503 with seconds on the resend: nothing reaches the
    service before either moment, records made meanwhile wait on disk, none is lost."""
    retry_at: list[float] = []

    def date_in_3s() -> str:
        retry_at.append(float(int(time.time()) + 3))
        return email.utils.formatdate(retry_at[-1], usegmt=True)

    def one_second() -> str:
        retry_at.append(time.time() + 1)
        return "1"

    server, arrivals = refusing_server([(429, date_in_3s), (503, one_second)])
    collectors.init(endpoint=serve(server), fingerprint_secret="s", spool_dir=tmp_path / "spool")
    one_request(0)
    assert collectors.flush(10)
    for n in range(1, 5):  # recorded while the service asked to wait: spooled, not sent
        one_request(n)
        assert collectors.flush(10)
    assert collectors.flush(60, include_spool=True)
    stats = collectors.stats()
    assert len(arrivals) >= 3
    assert arrivals[1].at >= retry_at[0]  # the HTTP-date was waited out
    assert all(a.at >= retry_at[1] for a in arrivals[2:])  # and then the seconds
    assert stats["dropped"] == 0 and stats["rejected"] == 0
    assert stats["exported"] + stats["replayed"] == 5 * SPANS_PER_REQUEST
    # What reached the service whole: the last answer was 200 for everything still spooled.
    assert sum(a.spans for a in arrivals[2:]) == 5 * SPANS_PER_REQUEST


@pytest.mark.parametrize("header", ["soon", "-1", "1.5", ""])
def test_an_unreadable_retry_after_still_keeps_the_batch(
    tmp_path: Path, serve: Callable[[http.server.ThreadingHTTPServer], str], header: str
) -> None:
    """A malformed header is not an error that loses the batch: the SDK backs off on its own
    clock and delivers it."""
    server, arrivals = refusing_server([(503, lambda: header)])
    collectors.init(endpoint=serve(server), fingerprint_secret="s", spool_dir=tmp_path / "spool")
    one_request(0)
    assert collectors.flush(30, include_spool=True)
    stats = collectors.stats()
    assert stats["dropped"] == 0
    assert stats["replayed"] == SPANS_PER_REQUEST
    assert [a.spans for a in arrivals] == [SPANS_PER_REQUEST, SPANS_PER_REQUEST]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ingest_max_pending": 1, "ingest_retry_after": 1})


def test_against_the_service_at_capacity_every_span_arrives_once(
    tmp_path: Path, live: LiveService
) -> None:
    """Warden itself at its admission bound: the SDK's export is refused with 503, stays in
    the spool, and is stored once a place is free."""
    key = live.key("shop", "ingest", "read")
    held = request(hybrid_trace(Ids(1))).SerializeToString()
    with held_export(live.url, key, held) as sock:
        wait_for(lambda: metric(live.url, "warden_ingest_pending_batches") == 1, "a held export")
        collectors.init(
            endpoint=live.url, api_key=key, fingerprint_secret="s", spool_dir=tmp_path / "spool"
        )
        for n in range(3):
            one_request(n)
        assert collectors.flush(10)
        wait_for(lambda: metric(live.url, "warden_ingest_refused_batches_total") >= 1, "503")
        assert collectors.stats()["spooled"] == 3 * SPANS_PER_REQUEST
        assert finish(sock, held) == 200
    assert collectors.flush(60, include_spool=True)
    stats = collectors.stats()
    assert stats["dropped"] == 0 and stats["rejected"] == 0
    assert stats["replayed"] == 3 * SPANS_PER_REQUEST
    with live.engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(Span)).scalar_one()
    assert stored == 4 + 3 * SPANS_PER_REQUEST
