"""Audit benchmark: export and offline verification of 1,000,000 records, and the ledger
under live ingest.

Run from the repository root:

    .venv/bin/python bench/audit.py                     # 1,000,000 records, then live ingest
    .venv/bin/python bench/audit.py --records 100000 --no-ingest --json

What it measures, in one run:

1. Fill: a fresh SQLite store (WAL) gets `--records` requests and their `request` ledger
   events, written as ingest writes them (one transaction per 20,000: an executemany of the
   request rows, then `ledger.append_many`, which computes the hash chain with
   `app.audit.chain`'s encoding and keeps the Merkle accumulator), plus an `erasure` of one
   subject; heads are signed half way and at the end.
2. Export: `export_bundle` of the whole project (a full scope: every event replayed) ->
   records/s, bundle size. Deflate level 1 by default; `--uncompressed` stores the JSON files.
3. Offline verification of that bundle with `verify_bundle` (manifest signature, every file's
   SHA-256, every event's canonical bytes and hash, the chain, the Merkle root, the request
   records against their events, counts) -> records/s, with worker processes (one part of the
   ledger and its request records at a time) and without.
4. The ceiling: SHA-256 over the same canonical event lines, chained as the ledger chains
   them (one hashlib call per event), and over the whole events file at once.
5. The ledger under live ingest (skip with `--no-ingest`): `warden serve` (bench/
   warden_process.py) fed OTLP batches of bench/ingest.py's synthetic traces by concurrent
   clients -> requests/s, that is ledger appends/s, checked against the events stored; and the
   same traffic to a server whose ingest skips the ledger step (`record_requests` replaced by a
   no-op in that process only) -> ingest with and without the ledger, in `--rounds` rounds
   of both (the order flipped each round), compared by their medians, and the ledger's cost:
   1 - with / without.

It prints figures; it asserts nothing about time. A bundle that does not verify, or rows that
did not land, fail the run (exit status 1).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from sqlalchemy import insert

from app.audit import layout, ledger
from app.audit.bundle import Scope, export_bundle
from app.audit.ledger import checkpoints
from app.audit.verify import verify_bundle
from app.config import Settings
from app.store import schema
from app.store.engine import create_db_engine, write_transaction
from app.store.tables import Request
from app.tenancy import projects
from bench.warden_process import (
    Server,
    clean_env,
    count_rows,
    run_cli,
    start_server,
    stop_server,
)

CHUNK = 20_000
SUBJECTS = 10_000
TARGET_VERIFY = 100_000  # records/s
TARGET_LEDGER_COST = 0.15  # of ingest throughput


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- 1. fill ----------------------------------------------------------------------------------


def _request(i: int, pseudonyms: list[str], t0: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A request row and its ledger payload, shaped as ingest writes them."""
    trace_id = f"{i:032x}"
    start = t0 + i * 1_000_000
    models = {
        "llm": {"name": "intent-parser", "version": "1"},
        "world_model": {"name": "booking-world-model", "version": str(3 + i % 2)},
        "planner": {"name": "mpc-planner", "version": "2"},
    }
    outcome = "denied" if i % 7 == 0 else "booked"
    fingerprint = hashlib.sha256(trace_id.encode()).hexdigest()
    row = {
        "trace_id": trace_id, "root_span_id": f"{i:016x}", "name": "request",
        "service_name": "booking", "start_time_unix_nano": start,
        "end_time_unix_nano": start + 50_000_000, "duration_ms": 50.0, "status": "ok",
        "fingerprint": fingerprint, "fingerprint_key_id": "k1", "subject": None,
        "outcome": outcome, "models": models, "features": None,
    }  # fmt: skip
    payload = {
        "trace_id": trace_id, "root_span_id": row["root_span_id"],
        "start_time_unix_nano": str(start), "fingerprint": fingerprint,
        "fingerprint_key_id": "k1", "models": models, "outcome": outcome, "status": "ok",
        "decisions": [{"chosen": "room-a@15:00", "confidence": 0.875, "candidates": 4}],
        "policies": [{"id": "risk-cap", "version": "1", "outcome": "allow"}],
        "spans": 20, "spans_digest": hashlib.sha256(fingerprint.encode()).hexdigest(),
        "input_retained": False, "subject": pseudonyms[i % len(pseudonyms)],
    }  # fmt: skip
    return row, payload


def fill(settings: Settings, records: int) -> tuple[Any, int, float]:
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    project_id = projects.create_project(engine, "bench")
    key = checkpoints.signing_key(settings)
    pseudonyms = [secrets.token_hex(16) for _ in range(SUBJECTS)]
    t0 = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
    started = time.perf_counter()
    for first in range(0, records, CHUNK):
        rows, events = [], []
        now = datetime.now(UTC)
        for i in range(first, min(first + CHUNK, records)):
            row, payload = _request(i, pseudonyms, t0)
            row["project_id"] = project_id
            row["ingested_at"] = now
            rows.append(row)
            events.append((ledger.REQUEST, payload))
        with write_transaction(engine) as conn:
            conn.execute(insert(Request), rows)
            ledger.append_many(conn, project_id, "bench", events, now, trusted=True)
        if first <= records // 2 < first + CHUNK:
            checkpoints.sign_heads(engine, key, project_id)
        if first and first % (10 * CHUNK) == 0:
            say(f"  {first:,} records ...")
    with write_transaction(engine) as conn:
        erasure = {"subject_pseudonym": pseudonyms[1], "requests": records // SUBJECTS}
        ledger.append(conn, project_id, "bench", ledger.ERASURE, erasure)
    checkpoints.sign_heads(engine, key, project_id)
    return engine, project_id, time.perf_counter() - started


# --- 4. the ceiling -----------------------------------------------------------------------------


def sha_ceiling(bundle: Path) -> tuple[float, float, int]:
    """(events/s chained, events/s as one buffer, bytes) over the bundle's canonical events."""
    with zipfile.ZipFile(bundle) as zf:
        names = sorted(n for n in zf.namelist() if (layout.part_number(n) or ("",))[0] == "events")
        lines = [line for name in names for line in zf.read(name).splitlines()]
    canonical = [layout.split_event_line(line)[0] for line in lines]  # type: ignore[index]
    sha256 = hashlib.sha256
    started = time.perf_counter()
    prev = bytes(32)
    for c in canonical:
        prev = sha256(prev + c).digest()
    chained = time.perf_counter() - started
    joined = b"".join(canonical)
    started = time.perf_counter()
    sha256(joined).digest()
    bulk = time.perf_counter() - started
    return len(lines) / chained, len(lines) / bulk, len(joined)


# --- 5. live ingest -------------------------------------------------------------------------------

def app_without_ledger() -> Any:
    """The service with ingest's ledger step made a no-op: the "without" side. uvicorn calls
    this factory in each worker process, so the change holds in every one."""
    import app.ingest.store as store

    store.record_requests = lambda *args, **kwargs: []
    from app.main import create_served_app

    return create_served_app()


_WITHOUT_LEDGER = (
    "import sys, uvicorn; "
    "uvicorn.run('bench.audit:app_without_ledger', factory=True, host='127.0.0.1', "
    "port=int(sys.argv[1]), workers=int(sys.argv[2]), log_level='warning', access_log=False)"
)


def _start(data_dir: Path, env: dict[str, str], workers: int, ledger_on: bool) -> Server:
    if ledger_on:
        return start_server(data_dir, env, workers)
    return start_server(
        data_dir, {**env, "PYTHONPATH": str(ROOT)}, workers,
        argv=lambda port: [sys.executable, "-c", _WITHOUT_LEDGER, str(port), str(workers)],
    )  # fmt: skip


def live_ingest(
    tmp: Path,
    batches: int,
    clients: int,
    workers: int,
    ledger_on: bool,
    failures: list[str],
    run: int = 0,
) -> dict[str, float]:
    from bench.ingest import SPANS_PER_TRACE, make_batches, send_all

    data_dir = tmp / f"{'with' if ledger_on else 'without'}-ledger-{run}"
    data_dir.mkdir()
    env = clean_env(data_dir)
    env.update(WARDEN_LINEAGE_INTERVAL="0", WARDEN_DRIFT_TICK="0",
               WARDEN_AUDIT_CHECKPOINT_INTERVAL="1")  # fmt: skip
    run_cli(env, "project", "create", "bench")
    key = run_cli(env, "key", "create", "--project", "bench", "--scope", "ingest",
                  "--name", "bench").strip()  # fmt: skip
    warm, measured = make_batches(4, 512, 11), make_batches(batches, 512, 12)
    server = _start(data_dir, env, workers, ledger_on)
    try:
        send_all(server.port, key, warm, min(clients, len(warm)))
        db = data_dir / "warden.db"
        before = count_rows(db, "audit_events")
        sent = send_all(server.port, key, measured, clients)
        failures += sent.errors
        events = count_rows(db, "audit_events") - before
        requests_sent = batches * 512 // SPANS_PER_TRACE
    finally:
        stop_server(server)
    if ledger_on and events < requests_sent * 0.95:
        failures.append(f"{events} ledger events for ~{requests_sent} requests sent")
    if not ledger_on and events:
        failures.append(f"the server without the ledger step appended {events} events")
    spans = batches * 512
    return {
        "seconds": sent.seconds,
        "spans_per_s": spans / sent.seconds,
        "requests_per_s": requests_sent / sent.seconds,
        "ledger_events_per_s": events / sent.seconds,
        "ledger_events": float(events),
    }


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Export and offline verification throughput of audit bundles, the raw "
        "SHA-256 ceiling, and the ledger under live ingest. Prints figures; asserts nothing "
        "about time.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="requests in the store")
    parser.add_argument("--uncompressed", action="store_true",
                        help="store the bundle's JSON files uncompressed (deflate level 1 else)")
    parser.add_argument("--no-ingest", dest="ingest", action="store_false",
                        help="skip the live ingest part (5)")
    parser.add_argument("--batches", type=int, default=200,
                        help="measured OTLP batches of 512 spans for the live ingest part")
    parser.add_argument("--clients", type=int, default=4, help="concurrent ingest clients")
    parser.add_argument("--rounds", type=int, default=3,
                        help="live ingest rounds, each with and without the ledger")
    parser.add_argument("--server-workers", type=int, default=os.cpu_count() or 1,
                        help="`warden serve --workers N` for the live ingest part")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="warden-bench-audit-"))
    figures: dict[str, Any] = {"records": args.records, "cpus": os.cpu_count(),
                               "python": platform.python_version()}  # fmt: skip
    failures: list[str] = []
    try:
        settings = Settings(
            data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'data' / 'warden.db'}",
            secret_key="bench", lineage_interval=0, drift_tick=0, sqlite_synchronous="NORMAL",
        )  # fmt: skip
        say(f"filling a store with {args.records:,} requests and ledger events ...")
        engine, _, fill_s = fill(settings, args.records)
        figures["fill_records_per_s"] = args.records / fill_s
        say(f"  done in {fill_s:.1f}s")

        out = tmp / "bundle.zip"
        say("exporting ...")
        key = checkpoints.signing_key(settings)
        result = export_bundle(engine, Scope("bench"), out, key,
                               compresslevel=None if args.uncompressed else 1)  # fmt: skip
        engine.dispose()
        figures["export_seconds"] = result.seconds
        figures["export_records_per_s"] = args.records / result.seconds
        figures["bundle_mb"] = result.bytes / 1e6
        events = result.manifest["counts"]["ledger_events"]
        say(f"  {result.seconds:.1f}s, {result.bytes / 1e6:.0f} MB, {events:,} events")

        public = [key.public_key()]
        for label, workers in (("parallel", None), ("one_process", 0)):
            say(f"verifying offline ({label.replace('_', ' ')}) ...")
            verdict = verify_bundle(out, public, workers=workers)
            if not verdict.ok:
                failures.append(f"the bundle does not verify: {verdict.summary()}")
            if verdict.records != args.records:
                failures.append(f"verified {verdict.records} records of {args.records}")
            figures[f"verify_{label}_seconds"] = verdict.seconds
            figures[f"verify_{label}_records_per_s"] = args.records / verdict.seconds
            figures[f"verify_{label}_workers"] = verdict.workers
            figures["ledger_parts"] = verdict.parts
            say(f"  {verdict.seconds:.1f}s: {verdict.summary()[:60]}...")

        say("SHA-256 ceiling over the same canonical events ...")
        chained, bulk, size = sha_ceiling(out)
        figures["sha256_chained_events_per_s"] = chained
        figures["sha256_bulk_events_per_s"] = bulk
        figures["canonical_mb"] = size / 1e6

        if args.ingest:
            # Rounds of both sides, the order flipped each round, compared by their medians:
            # one run of each is at the mercy of whatever else the machine does meanwhile.
            runs: dict[str, list[dict[str, float]]] = {"with_ledger": [], "without_ledger": []}
            for r in range(args.rounds):
                for ledger_on in (True, False) if r % 2 == 0 else (False, True):
                    side = "with_ledger" if ledger_on else "without_ledger"
                    say(f"live ingest {side.replace('_', ' ')} (round {r + 1} of {args.rounds}):"
                        f" {args.batches} batches, {args.clients} clients ...")  # fmt: skip
                    live = live_ingest(tmp, args.batches, args.clients, args.server_workers,
                                       ledger_on, failures, r)  # fmt: skip
                    runs[side].append(live)
            for side, found in runs.items():
                for name in found[0]:
                    figures[f"ingest_{side}_{name}"] = statistics.median(x[name] for x in found)
                figures[f"ingest_{side}_each_spans_per_s"] = [x["spans_per_s"] for x in found]
    finally:
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    n = args.records
    f = figures

    def row(label: str, value: float, unit: str, extra: str = "") -> None:
        print(f"  {label:<44}{value:>12,.0f} {unit}{extra}")

    print(f"audit bundle of {n:,} requests + {n + 1:,} ledger events "
          f"({os.cpu_count()} CPUs, Python {platform.python_version()})")  # fmt: skip
    row("fill (request rows + ledger.append_many)", f["fill_records_per_s"], "records/s")
    row(f"export, full scope ({'stored' if args.uncompressed else 'deflate 1'})",
        f["export_records_per_s"], "records/s",
        f"   ({f['export_seconds']:.1f} s, {f['bundle_mb']:,.0f} MB)")  # fmt: skip
    for label in ("parallel", "one_process"):
        rate = f[f"verify_{label}_records_per_s"]
        met = "met" if rate >= TARGET_VERIFY else "NOT met"
        took = f[f"verify_{label}_seconds"]
        workers = f[f"verify_{label}_workers"]
        how = f"{workers} worker processes" if workers else "this process"
        row(f"verify offline ({label.replace('_', ' ')})", rate, "records/s",
            f"   ({took:.1f} s; {f['ledger_parts']} ledger parts, {how}; target "
            f"{TARGET_VERIFY:,}: {met})")  # fmt: skip
    row("SHA-256 ceiling, chained, one call per event", f["sha256_chained_events_per_s"],
        "events/s")  # fmt: skip
    row("SHA-256 ceiling, one buffer", f["sha256_bulk_events_per_s"], "events/s",
        f"   ({f['canonical_mb']:,.0f} MB of canonical events)")  # fmt: skip
    if args.ingest:
        for side in ("with_ledger", "without_ledger"):
            requests = f[f"ingest_{side}_requests_per_s"]
            each = ", ".join(f"{x / 1000:.1f}k" for x in f[f"ingest_{side}_each_spans_per_s"])
            row(f"live ingest {side.replace('_', ' ')} (median)", f[f"ingest_{side}_spans_per_s"],
                "spans/s", f"   ({requests:,.0f} requests/s; each run {each})")  # fmt: skip
        appends = f["ingest_with_ledger_ledger_events_per_s"]
        row("ledger appends under concurrent ingest", appends, "events/s",
            f"   ({args.clients} clients, {args.server_workers} server workers)")  # fmt: skip
        cost = 1 - f["ingest_with_ledger_spans_per_s"] / f["ingest_without_ledger_spans_per_s"]
        figures["ledger_cost_to_ingest"] = cost
        met = "met" if cost <= TARGET_LEDGER_COST else "NOT met"
        print(f"  {'ledger cost to ingest (1 - with / without)':<44}{cost:>12.1%}"
              f"   (target at most {TARGET_LEDGER_COST:.0%}: {met})")
    if args.json:
        print(json.dumps(figures))
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
