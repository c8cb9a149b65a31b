"""Where the server-side ingest time goes: cProfile of `ingest_traces` in process.

Run from the repository root:

    .venv/bin/python bench/profile_ingest.py                # 100 batches, top 40 by tottime
    .venv/bin/python bench/profile_ingest.py --sort cumulative --top 60 --out /tmp/ingest.prof

Same batches as bench/ingest.py (same generator and seed), a fresh SQLite store with the
service defaults (WAL, synchronous=FULL), one thread, no HTTP: it shows the cost of
decode -> span_rows -> store_batch (insert, normalise, typed inserts, commit). A coarse
per-stage breakdown (timed without the profiler) is printed first. `--database postgresql`
profiles the same on a durable PostgreSQL server of its own instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The repository root first: bench/policies.py must not shadow the `policies` package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from sqlalchemy import insert

from app.audit.erasure import Vault
from app.config import Settings
from app.ingest import otlp
from app.ingest.normalise import normalise, span_rows
from app.ingest.pipeline import ingest_traces
from app.metrics import Metrics
from app.store import schema
from app.store.engine import create_db_engine, write_transaction
from app.store.tables import Project
from bench.ingest import make_batches


def fresh_engine(data_dir: Path, server: Any = None):  # type: ignore[no-untyped-def]
    """A fresh store: a SQLite file under `data_dir`, or a new database on `server`."""
    url = server.create_database(f"prof_{data_dir.name}") if server else ""
    engine = create_db_engine(Settings(data_dir=data_dir, database_url=url))
    schema.upgrade(engine)
    with write_transaction(engine) as conn:
        pid = int(
            conn.execute(insert(Project).values(name="bench").returning(Project.id)).scalar_one()
        )
    return engine, pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=100, help="batches to ingest")
    parser.add_argument("--batch-size", type=int, default=512, help="spans per batch")
    parser.add_argument("--seed", type=int, default=20250101, help="generator seed")
    parser.add_argument("--sort", default="tottime", help="pstats sort key")
    parser.add_argument("--top", type=int, default=40, help="rows of the profile to print")
    parser.add_argument("--out", help="also dump the raw profile here (for snakeviz etc.)")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="postgresql: a durable PostgreSQL server of its own "
        "(tests.servers.postgres_server), one fresh database per pass",
    )
    args = parser.parse_args()
    if args.database == "postgresql":
        from tests.servers import postgres_server

        with postgres_server(durable=True) as server:
            return profile(args, server)
    return profile(args, None)


def profile(args: argparse.Namespace, server: Any) -> int:
    batches = make_batches(args.batches, args.batch_size, args.seed)
    spans = args.batches * args.batch_size
    limit = Settings().payload_limit_bytes
    vault = Vault(b"profile-ingest")
    tmp = Path(tempfile.mkdtemp(prefix="warden-prof-"))
    try:
        # 1. Stage breakdown without the profiler, on its own store.
        t_parse = t_rows = t_norm = 0.0
        for body in batches:
            t0 = time.perf_counter()
            request = otlp.parse_request(body, otlp.PROTOBUF)
            t1 = time.perf_counter()
            rows = span_rows(request).spans
            t2 = time.perf_counter()
            normalise(rows)
            t3 = time.perf_counter()
            t_parse += t1 - t0
            t_rows += t2 - t1
            t_norm += t3 - t2
        engine, pid = fresh_engine(tmp / "plain", server)
        metrics = Metrics()
        t0 = time.perf_counter()
        for body in batches:
            ingest_traces(engine, vault, metrics, pid, body, otlp.PROTOBUF, None, limit)
        t_total = time.perf_counter() - t0
        engine.dispose()
        print(
            f"{args.batches} batches x {args.batch_size} spans, one thread, no HTTP, "
            f"{args.database}"
        )
        print(f"  ingest_traces total     {t_total:7.2f} s  {spans / t_total:9,.0f} spans/s")
        for label, t in (
            ("protobuf parse", t_parse),
            ("span_rows", t_rows),
            ("normalise", t_norm),
            ("rest: store_batch DB work", t_total - t_parse - t_rows - t_norm),
        ):
            print(
                f"  {label:<24}{t:7.2f} s  {t / t_total:6.1%}  "
                f"{t / args.batches * 1000:6.1f} ms/batch"
            )

        # 2. The profile, on a second fresh store.
        engine, pid = fresh_engine(tmp / "profiled", server)
        profiler = cProfile.Profile()
        profiler.enable()
        for body in batches:
            ingest_traces(engine, vault, metrics, pid, body, otlp.PROTOBUF, None, limit)
        profiler.disable()
        engine.dispose()
        if args.out:
            profiler.dump_stats(args.out)
        print()
        pstats.Stats(profiler).strip_dirs().sort_stats(args.sort).print_stats(args.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
