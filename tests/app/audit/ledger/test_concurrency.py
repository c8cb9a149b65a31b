"""Many writers, one chain: threads and two `warden serve` processes appending at once."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from sqlalchemy import Engine

from app.audit import heads, ledger
from app.audit.ledger import checkpoints
from app.config import Settings
from app.ingest.normalise import span_rows
from app.ingest.store import store_batch
from app.store.engine import write_transaction
from app.tenancy import projects
from tests import otlp
from tests.app.audit.conftest import VAULT, events, verify
from tests.conftest import warden_serve

THREADS = 4
APPENDS = 10
CLIENTS = 2  # per server process
BATCHES = 6  # per client
TRACES = 2  # per batch


def test_concurrent_writers_make_one_chain_without_fork_or_gap(
    tmp_path: Path, database_url: str, settings: Settings, engine: Engine
) -> None:
    with (
        warden_serve(tmp_path, database_url) as first,
        warden_serve(tmp_path, database_url, first_run=False) as second,
    ):
        pid = projects.project_id(engine, "default")
        errors: list[str] = []
        traces: set[str] = set()
        lock = threading.Lock()

        def appender(n: int) -> None:
            try:
                for i in range(APPENDS):
                    with write_transaction(engine) as conn:
                        ledger.append(conn, pid, "default", "test.thread", {"t": n, "i": i})
                    if i % 3 == 0:  # and ingest in-process, like the gateway
                        spans = otlp.hybrid_trace(otlp.Ids(1000 + n * 100 + i))
                        with lock:
                            traces.add(spans[0].trace_id.hex())
                        store_batch(engine, VAULT, pid, span_rows(otlp.request(spans)))
            except Exception as exc:  # reported below, with the thread's number
                errors.append(f"appender {n}: {exc!r}")

        def client(url: str, n: int) -> None:
            try:
                with httpx.Client(base_url=url, timeout=60,
                                  headers={"Authorization": f"Bearer {first.key}"}) as http:
                    for b in range(BATCHES):
                        ids = otlp.Ids(n * 1000 + b)
                        spans = [s for _ in range(TRACES) for s in otlp.hybrid_trace(ids)]
                        with lock:
                            traces.update(s.trace_id.hex() for s in spans)
                        body = otlp.request(spans).SerializeToString()
                        answer = http.post("/v1/traces", content=body, headers=otlp.PROTOBUF)
                        assert answer.status_code == 200, answer.text
                        if b % 2:
                            assert http.post("/v1/audit/heads").status_code == 200
            except Exception as exc:
                errors.append(f"client {n} of {url}: {exc!r}")

        workers = [threading.Thread(target=appender, args=(n,)) for n in range(THREADS)]
        workers += [
            threading.Thread(target=client, args=(server.url, 10 + 10 * s + c))
            for s, server in enumerate((first, second))
            for c in range(CLIENTS)
        ]  # fmt: skip
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=240)
        assert not errors, errors
        key = heads.load_private_key(checkpoints.signing_key_path(settings))
        checkpoints.sign_heads(engine, key, pid)

    rows = events(engine, pid)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))  # no gap, no repeat
    assert len({bytes(r.prev_hash) for r in rows}) == len(rows)  # no fork: one successor each
    kinds = [r.kind for r in rows]
    assert kinds.count("test.thread") == THREADS * APPENDS
    assert sorted(r.payload["trace_id"] for r in rows if r.kind == "request") == sorted(traces)
    report = verify(engine, "default", key)
    assert report.ok, report.message
    assert report.heads >= 2
