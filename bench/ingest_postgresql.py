"""`bench/ingest.py --database postgresql`: a live `warden serve` on PostgreSQL against the raw
COPY and executemany ceilings on the same rows, in one run.

A PostgreSQL server of its own (tests.servers.postgres_server, durable: fsync and full page
writes on, as users run it) holds one fresh database per measurement:

1. End to end: `warden serve --workers N` on a fresh database, fed the warm-up batches and
   then the measured ones over HTTP as for SQLite; only the measured ones are timed.
2. Raw COPY: exactly the span and state rows the end-to-end run stores, as the service makes
   them (parsed, normalised, JSON serialised, before the clock starts), COPYed by psycopg
   straight into `spans` and `world_model_states`, one transaction per batch as the service
   commits, one connection: the warm-up batches first, untimed, so both sides write into
   tables of the same size, then the measured batches, timed. Measured before and after the
   end-to-end runs; the faster counts.
3. Raw executemany: the same rows, the same way, by psycopg `executemany` of plain INSERTs.

How rows are counted, on every side: rows = the spans + world-model states of the measured
batches (warm-up excluded), per second of the timed part. The service writes more per batch
than that (requests, their models, decisions, policy evaluations, one ledger event per
request, the ledger head) and checks for stored keys; the ceilings write only those two
tables, into no conflicts. The ratio end to end / raw COPY compares rows per second.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.ingest import send_all
from bench.warden_process import clean_env, run_cli, start_server, stop_server
from tests.servers import PostgresServer, postgres_server
from tests.topology import keys_init

TARGET_RATIO = 0.5


@dataclass
class Rows:
    """The bulk rows of each batch, as the service writes them (project id 1)."""

    spans: list[list[tuple[Any, ...]]]
    states: list[list[tuple[Any, ...]]]

    @property
    def count(self) -> int:
        return sum(map(len, self.spans)) + sum(map(len, self.states))


def prepare(batches: list[bytes], project_id: int) -> Rows:
    from app.ingest.normalise import normalise, span_rows
    from app.ingest.store import _span_params, _state_params

    spans, states = [], []
    for body in batches:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        rows = sorted(span_rows(request).spans, key=lambda r: (r["trace_id"], r["span_id"]))
        typed = normalise(rows)
        typed.states.sort(key=lambda r: (r["trace_id"], r["span_id"], r["seq"]))
        spans.append([_span_params(project_id, r) for r in rows])
        states.append([_state_params(project_id, s) for s in typed.states])
    return Rows(spans, states)


@contextlib.contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    """A new database with Warden's schema and one project; its SQLAlchemy URL."""
    from sqlalchemy import insert

    from app.config import Settings
    from app.store import schema
    from app.store.engine import create_db_engine, write_transaction
    from app.store.tables import Project

    url = server.create_database(f"bench_{uuid.uuid4().hex[:10]}")
    engine = create_db_engine(Settings(database_url=url), url)
    try:
        schema.upgrade(engine)
        with write_transaction(engine) as conn:
            conn.execute(insert(Project).values(name="bench"))
    finally:
        engine.dispose()
    yield url


def driver_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def count_rows(url: str) -> tuple[int, int, int]:
    with psycopg.connect(driver_url(url)) as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in ("spans", "world_model_states", "requests")
        )


def raw_copy(url: str, warm: Rows, rows: Rows) -> float:
    from app.ingest.store import SPAN_COLUMNS, STATE_COLUMNS

    copy_spans = f"COPY spans ({', '.join(SPAN_COLUMNS)}) FROM STDIN"
    copy_states = f"COPY world_model_states ({', '.join(STATE_COLUMNS)}) FROM STDIN"

    def write(cur: psycopg.Cursor[Any], spans: list[Any], states: list[Any]) -> None:
        for statement, batch in ((copy_spans, spans), (copy_states, states)):
            with cur.copy(statement) as copy:
                for row in batch:
                    copy.write_row(row)

    return _timed(url, warm, rows, write)


def raw_executemany(url: str, warm: Rows, rows: Rows) -> float:
    from app.ingest.store import SPAN_COLUMNS, STATE_COLUMNS

    def insert(table: str, columns: tuple[str, ...]) -> str:
        return (f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join(['%s'] * len(columns))})")  # fmt: skip

    insert_spans = insert("spans", SPAN_COLUMNS)
    insert_states = insert("world_model_states", STATE_COLUMNS)

    def write(cur: psycopg.Cursor[Any], spans: list[Any], states: list[Any]) -> None:
        cur.executemany(insert_spans, spans)
        cur.executemany(insert_states, states)

    return _timed(url, warm, rows, write)


def _timed(
    url: str, warm: Rows, rows: Rows, write: Callable[[psycopg.Cursor[Any], Any, Any], None]
) -> float:
    """Writes `warm` untimed, then `rows`, one transaction per batch; the seconds of `rows`."""
    with psycopg.connect(driver_url(url)) as conn:
        for spans, states in zip(warm.spans, warm.states, strict=True):
            with conn.transaction(), conn.cursor() as cur:
                write(cur, spans, states)
        t0 = time.perf_counter()
        for spans, states in zip(rows.spans, rows.states, strict=True):
            with conn.transaction(), conn.cursor() as cur:
                write(cur, spans, states)
        return time.perf_counter() - t0


def run(args: argparse.Namespace, warmup: list[bytes], measured: list[bytes], tmp: Path,
        say: Callable[[str], None]) -> int:  # fmt: skip
    failures: list[str] = []
    say("preparing the span and state rows of the measured batches ...")
    rows = prepare(measured, project_id=1)
    warm_rows = prepare(warmup, project_id=1)
    measured_rows = rows.count
    measured_spans = sum(map(len, rows.spans))
    e2e_seconds: list[float] = []
    latencies: list[float] = []
    warm_spans = sum(map(len, warm_rows.spans))
    # What every database holds at the end, end to end or raw: warm-up and measured rows.
    expected = (
        measured_spans + warm_spans,
        measured_rows - measured_spans + warm_rows.count - warm_spans,
    )
    say("starting PostgreSQL (durable: fsync on) ...")
    ceilings: dict[str, list[float]] = {"copy": [], "executemany": []}
    with postgres_server(durable=True) as server:

        def measure_ceilings() -> None:
            for name, write in (("copy", raw_copy), ("executemany", raw_executemany)):
                say(f"raw {name} into the tables ...")
                with fresh_database(server) as url:
                    ceilings[name].append(write(url, warm_rows, rows))
                    stored = count_rows(url)[:2]
                    if stored != expected:
                        failures.append(f"raw {name} stored {stored}")

        # Before and after the end-to-end runs, the best of each counting: the machine's
        # load drifts, and the ceiling must not be understated.
        measure_ceilings()
        for round_no in range(args.rounds or 1):
            server_dir = tmp / f"server-{round_no}"
            server_dir.mkdir()
            with fresh_database(server) as url:
                env = clean_env(server_dir)
                # The shared secrets a process on PostgreSQL must be given, as a user makes them.
                env.update(keys_init(server_dir / "keys"), WARDEN_DATABASE_URL=url,
                           WARDEN_LINEAGE_INTERVAL="0")  # fmt: skip
                key = run_cli(env, "key", "create", "--project", "bench", "--scope", "ingest",
                              "--scope", "read", "--name", "bench").strip()  # fmt: skip
                live = start_server(server_dir, env, args.server_workers)
                try:
                    say(f"round {round_no + 1}: warden serve --workers {args.server_workers} "
                        f"on port {live.port}; warm-up {len(warmup)} batches")  # fmt: skip
                    warm = send_all(live.port, key, warmup, min(args.clients, max(len(warmup), 1)))
                    failures += [f"warm-up: {e}" for e in warm.errors]
                    say(f"  sending {len(measured)} batches with {args.clients} client(s) ...")
                    sent = send_all(live.port, key, measured, args.clients)
                    failures += sent.errors
                finally:
                    stop_server(live)
                    if failures:
                        say(f"server log (last lines):\n{live.tail()}")
                stored = count_rows(url)
                if stored[:2] != expected:
                    failures.append(f"stored spans/states {stored[:2]}, expected {expected}")
                e2e_seconds.append(sent.seconds)
                latencies += sent.latencies
        measure_ceilings()
        pg_version = server.admin().execute("SHOW server_version").fetchone()[0]  # type: ignore[index]

    e2e = statistics.median(e2e_seconds)
    copy_seconds, many_seconds = min(ceilings["copy"]), min(ceilings["executemany"])
    e2e_rows, copy_rows, many_rows = (measured_rows / s for s in (e2e, copy_seconds, many_seconds))
    ratio = e2e_rows / copy_rows
    lat = sorted(latencies)
    p50 = statistics.median(lat) * 1000 if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
    states = measured_rows - measured_spans
    table = [
        ("spans / states per measured run", f"{measured_spans:,} / {states:,}"),
        ("batches x spans, clients", f"{len(measured)} x {args.batch_size}, {args.clients}"),
        ("server worker processes", f"{args.server_workers}"),
        ("end to end (median of runs)",
         f"{e2e_rows:,.0f} rows/s = {measured_spans / e2e:,.0f} spans/s"),
        ("  each run", ", ".join(f"{measured_rows / s / 1000:.1f}k rows/s" for s in e2e_seconds)),
        ("request latency p50 / p99", f"{p50:.0f} ms / {p99:.0f} ms"),
        ("raw COPY ceiling (best of before/after)", f"{copy_rows:,.0f} rows/s"),
        ("  each", ", ".join(f"{measured_rows / s / 1000:.1f}k" for s in ceilings["copy"])),
        ("raw executemany (best of before/after)", f"{many_rows:,.0f} rows/s"),
        ("  each",
         ", ".join(f"{measured_rows / s / 1000:.1f}k" for s in ceilings["executemany"])),
        ("ratio end to end / raw COPY", f"{ratio:.1%}"),
        ("ratio end to end / raw executemany", f"{e2e_rows / many_rows:.1%}"),
    ]  # fmt: skip
    width = max(len(label) for label, _ in table)
    print()
    print(
        f"Warden ingest benchmark (PostgreSQL {pg_version}, durable; rows = spans + "
        "world-model states)"
    )
    print("-" * (width + 36))
    for label, value in table:
        print(f"{label:<{width}}  {value:>34}")
    print("-" * (width + 36))
    verdict = (
        "n/a (data checks failed)" if failures else ("met" if ratio >= TARGET_RATIO else "NOT met")
    )
    print(f"target: end to end >= {TARGET_RATIO:.0%} of the raw COPY ceiling: {verdict}")
    if failures:
        print(f"\nDATA CHECKS FAILED ({len(failures)}):")
        for failure in failures[:20]:
            print(f"  {failure}")
    else:
        print(
            "data checks: every answer 200 without rejections; span and state row counts "
            "equal what was sent, in every database"
        )
    return 1 if failures else 0
