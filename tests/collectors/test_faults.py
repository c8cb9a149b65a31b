"""Faults: a killed service, a killed user process, a fork, a damaged spool, a full spool."""

from __future__ import annotations

import http.server
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select

import collectors
from app.store.tables import Request, Span
from tests.conftest import free_port, warden_serve

ROOT = Path(__file__).resolve().parents[2]


def stored(database_url: str) -> tuple[int, int, int]:
    """(requests, distinct trace ids, spans) in the service's database."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            requests = conn.execute(select(func.count()).select_from(Request)).scalar_one()
            distinct = conn.execute(
                select(func.count(func.distinct(Request.trace_id)))
            ).scalar_one()
            spans = conn.execute(select(func.count()).select_from(Span)).scalar_one()
    finally:
        engine.dispose()
    return int(requests), int(distinct), int(spans)


def one_request(n: int) -> None:
    with collectors.request({"n": n}) as req:
        with collectors.llm_call(system="offline", request_model="parser"):
            pass
        collectors.decision([{"action": "a", "score": 1.0}], "a")
        req.set_outcome("booked")


def test_service_killed_mid_run_then_restarted_stores_every_request_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    port = free_port()
    with warden_serve(tmp_path, url, port=port) as first:
        key = first.key
        collectors.init(
            endpoint=first.url, api_key=key, fingerprint_secret="s", spool_dir=tmp_path / "spool"
        )
        for n in range(400):
            one_request(n)
            time.sleep(0.001)
        os.killpg(first.proc.pid, signal.SIGKILL)  # a real crash, mid-run
        first.proc.wait(timeout=10)
        for n in range(400, 1000):
            one_request(n)
    assert collectors.flush(10)
    assert collectors.stats()["spooled"] > 0
    with warden_serve(tmp_path, url, port=port, first_run=False):
        assert collectors.flush(90, include_spool=True)
        stats = collectors.stats()
    assert stats["dropped"] == 0 and stats["rejected"] == 0
    assert stats["exported"] + stats["replayed"] == 3000
    assert stored(url) == (1000, 1000, 3000)


def test_user_process_killed_and_restarted_replays_its_spool(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    spool = str(tmp_path / "spool")
    dead = f"http://127.0.0.1:{free_port()}"
    with warden_serve(tmp_path, url) as server:
        # First process: the service is unreachable for it; killed in the middle of the run.
        args = [sys.executable, "-m", "tests.collectors.sdk_process", dead, server.key, spool]
        first = subprocess.Popen([*args, "0", "1000"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert first.stdout is not None
        last = -1
        for line in first.stdout:
            last = int(line)
            if last >= 400:
                break
        first.kill()
        first.wait(timeout=10)
        # Second process: carries on from the last request it knows was done, with the
        # service reachable; it replays the first process's spool too.
        second = subprocess.run(
            [sys.executable, "-m", "tests.collectors.sdk_process", server.url, server.key, spool,
             str(last + 1), "1000", "--flush"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert second.returncode == 0, second.stderr[-2000:]
        assert second.stdout.splitlines()[-1] == "flushed"
        with httpx.Client(base_url=server.url) as client:
            metrics = client.get("/metrics").text
    requests, distinct, spans = stored(url)
    assert (requests, distinct) == (1000, 1000)
    assert spans == 3000
    # Only the request in flight at the kill can have been recorded twice (same ids, other
    # times): the service kept the first and refused the second as a conflict.
    conflicts = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('warden_rejected_spans_total{reason="conflict"}')
    ]
    assert sum(conflicts) <= 3


def test_a_forked_child_records_on_its_own_and_nothing_is_sent_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    with warden_serve(tmp_path, url) as server:
        collectors.init(
            endpoint=server.url,
            api_key=server.key,
            fingerprint_secret="s",
            spool_dir=tmp_path / "spool",
        )
        for n in range(10):
            one_request(n)  # still queued in the parent when it forks
        pid = os.fork()
        if pid == 0:  # the child: a pre-forked worker
            code = 1
            try:
                for n in range(100, 120):
                    one_request(n)
                code = 0 if collectors.flush(30) else 2
            finally:
                os._exit(code)
        for n in range(200, 220):
            one_request(n)
        assert collectors.flush(30)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        metrics = httpx.get(f"{server.url}/metrics").text
    assert stored(url) == (50, 50, 150)
    assert "warden_duplicate_spans_total 0.0" in metrics


def test_a_damaged_spool_row_is_skipped_never_replayed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    spool = tmp_path / "spool"
    with warden_serve(tmp_path, url) as server:
        collectors.init(
            endpoint=f"http://127.0.0.1:{free_port()}", api_key=server.key,
            fingerprint_secret="s", spool_dir=spool,
        )  # fmt: skip
        for n in range(3):
            one_request(n)
            assert collectors.flush(10)  # one spooled batch per request
        collectors.shutdown()
        db = sqlite3.connect(spool / "spool.db")
        rows = [r[0] for r in db.execute("SELECT id FROM spool ORDER BY id")]
        assert len(rows) == 3
        # Flip one byte of the middle batch, as a damaged disk page would.
        payload = bytearray(
            db.execute("SELECT payload FROM spool WHERE id = ?", (rows[1],)).fetchone()[0]
        )
        payload[len(payload) // 2] ^= 0xFF
        db.execute("UPDATE spool SET payload = ? WHERE id = ?", (bytes(payload), rows[1]))
        db.commit()
        db.close()

        collectors.init(
            endpoint=server.url, api_key=server.key, fingerprint_secret="s", spool_dir=spool
        )
        assert collectors.flush(30, include_spool=True)
        stats = collectors.stats()
    assert stats["spool_corrupt_batches"] == 1
    assert stats["replayed"] == 6
    assert stored(url) == (2, 2, 6)


def test_a_torn_last_write_is_dropped_by_the_journal(tmp_path: Path) -> None:
    """Cut the spool's write-ahead log in the middle of its last frame, as a crash would."""
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    spool = tmp_path / "spool"
    with warden_serve(tmp_path, url) as server:
        code = (
            "import collectors, os, sys\n"
            f"collectors.init(endpoint='http://127.0.0.1:{free_port()}', api_key='{server.key}',"
            f" fingerprint_secret='s', spool_dir={str(spool)!r})\n"
            "from tests.collectors.test_faults import one_request\n"
            "for n in range(5):\n"
            "    one_request(n)\n"
            "    assert collectors.flush(10)\n"
            "os._exit(0)  # no checkpoint: the batches live in the WAL\n"
        )
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
        wal = spool / "spool.db-wal"
        size = wal.stat().st_size
        assert size > 0
        with wal.open("r+b") as f:
            f.truncate(size - 100)
        collectors.init(
            endpoint=server.url, api_key=server.key, fingerprint_secret="s", spool_dir=spool
        )
        assert collectors.flush(30, include_spool=True)
        stats = collectors.stats()
    # The torn batch is gone whole; the four before it arrive intact.
    assert stats["replayed"] == 12
    assert stats["spool_corrupt_batches"] == 0
    assert stored(url) == (4, 4, 12)


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    seen: list[float] = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(time.monotonic())
            if len(seen) == 1:
                self.send_response(503)
                self.send_header("Retry-After", "2")
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        collectors.init(
            endpoint=f"http://127.0.0.1:{server.server_address[1]}",
            fingerprint_secret="s", spool_dir=tmp_path / "spool",
        )  # fmt: skip
        one_request(1)
        assert collectors.flush(30, include_spool=True)
    finally:
        server.shutdown()
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 2.0
    assert collectors.stats()["replayed"] == 3


def test_a_full_spool_drops_counts_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    collectors.init(
        endpoint=f"http://127.0.0.1:{free_port()}", fingerprint_secret="s",
        spool_dir=tmp_path / "spool", spool_max_bytes=2000,
    )  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="warden.collectors"):
        for n in range(20):
            one_request(n)
            assert collectors.flush(10)
    stats = collectors.stats()
    assert stats["spooled"] > 0 and stats["dropped"] > 0
    assert stats["spooled"] + stats["dropped"] == 60
    full = [r for r in caplog.records if "is full" in r.getMessage()]
    assert len(full) == 1
