"""Ingest throughput benchmark: a live `warden serve` against the raw SQLite ceiling.

Run from the repository root:

    .venv/bin/python bench/ingest.py                 # 200 batches x 512 spans, 4 clients
    .venv/bin/python bench/ingest.py --batches 50 --clients 4 --json
    .venv/bin/python bench/ingest.py --overload      # 3x capacity: bench/overload.py

What it measures, in one run:

1. End to end: a real `warden serve` subprocess on a free port with a fresh data dir (SQLite
   in WAL mode, synchronous=FULL: the defaults), fed pre-serialized OTLP/protobuf
   `ExportTraceServiceRequest` batches over persistent HTTP connections, one per client
   thread. Wall time from the first request to the last answer -> spans/s. Every answer must
   be 200 without partial_success rejections; afterwards the stored data is checked through
   `GET /v1/requests` and by counting the rows of the `spans` table directly.
2. The raw ceiling: the same span rows (as `span_rows` makes them, plus `project_id`)
   inserted into a fresh SQLite database by one SQLAlchemy Core executemany per batch, one
   write transaction per batch. Only the insert loop is timed -> spans/s.

`--database postgresql` measures on a PostgreSQL server of its own instead, beside raw COPY
and raw executemany of the same span and state rows (bench/ingest_postgresql.py).

It prints figures; it asserts nothing about time. Data checks (status codes, row counts)
do fail the run (exit status 1).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import queue
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds scripts named like the packages they measure (policies.py): the repository
# root, not this folder, comes first on the import path.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import (
    ResourceSpans,
    ScopeSpans,
    Span,
    Status,
)

from bench.warden_process import (
    WARDEN,
    clean_env,
    count_rows,
    get_json,
    run_cli,
    start_server,
    stop_server,
)
from collectors import conventions as wire

TARGET_SPANS_PER_S = 15_000
TARGET_RATIO = 0.35
SPANS_PER_TRACE = 20
PROTOBUF = "application/x-protobuf"

# --------------------------------------------------------------------------------------------
# Synthetic traffic of a hybrid AI stack (LLM + world model + planner), 20 spans per trace.
# --------------------------------------------------------------------------------------------

SERVICES = {
    "gateway": {"service.name": "inference-gateway", "service.version": "2.4.1",
                "deployment.environment": "bench", "host.name": "node-a"},
    "llm": {"service.name": "llm-server", "service.version": "0.9.3",
            "deployment.environment": "bench", "host.name": "gpu-1"},
    "world_model": {"service.name": "world-model", "service.version": "1.2.0",
                    "deployment.environment": "bench", "host.name": "gpu-2"},
    "planner": {"service.name": "planner", "service.version": "3.0.7",
                "deployment.environment": "bench", "host.name": "node-b"},
}
SCOPE = InstrumentationScope(name="warden.bench", version="0.1.0")
LAYERS = ("encoder", "dynamics")
ACTIONS = ("climb", "descend", "turn_left", "turn_right", "hold", "speed_up", "slow_down",
           "reroute")
OUTCOMES = ("ok",) * 8 + ("refused", "error")
LLMS = (("llama-3.1-8b-instruct", "2024-07-23"), ("mistral-7b-instruct", "0.3"))
WORLD_MODELS = (("atc-dynamics", "7"), ("atc-dynamics", "8"))
PLANNERS = (("mcts-planner", "1.4.0"),)
GENERIC = (
    # (name, service, span kind): 16 generic spans, children of the root
    ("http.server", "gateway", 2),
    ("auth.check", "gateway", 1),
    ("cache.get", "gateway", 3),
    ("http.client", "gateway", 3),
    ("tokenizer.encode", "llm", 1),
    ("http.client", "llm", 3),
    ("kv_cache.lookup", "llm", 1),
    ("tokenizer.decode", "llm", 1),
    ("http.client", "world_model", 3),
    ("db.query", "world_model", 3),
    ("feature.load", "world_model", 1),
    ("http.client", "planner", 3),
    ("constraints.load", "planner", 1),
    ("db.query", "planner", 3),
    ("policy.check", "gateway", 1),
    ("http.client", "gateway", 3),
)
assert 4 + len(GENERIC) == SPANS_PER_TRACE


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[_any(v) for v in value]))
    raise TypeError(type(value))


def _kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_any(v)) for k, v in attrs.items()]


class TraceFactory:
    """Makes whole traces as (service, Span) pairs; every id from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = 1_763_000_000_000_000_000  # ns, a fixed start so runs are repeatable
        self.seen_ids: set[bytes] = set()

    def _id(self, size: int) -> bytes:
        while True:
            value = self.rng.randbytes(size)
            if any(value) and value not in self.seen_ids:
                self.seen_ids.add(value)
                return value

    def trace(self) -> list[tuple[str, Span]]:
        rng = self.rng
        trace_id = self._id(16)
        start = self.clock
        self.clock += rng.randint(200_000, 2_000_000)  # requests arrive every 0.2-2 ms
        total = rng.randint(150, 900) * 1_000_000
        llm, wm, planner = rng.choice(LLMS), rng.choice(WORLD_MODELS), rng.choice(PLANNERS)
        outcome = rng.choice(OUTCOMES)
        root_id = self._id(8)
        spans: list[tuple[str, Span]] = []

        def span(service: str, name: str, parent: bytes, kind: int, t0: int, t1: int,
                 attrs: dict[str, Any], events: list[Span.Event] | None = None,
                 span_id: bytes | None = None, error: bool = False) -> bytes:
            sid = span_id or self._id(8)
            spans.append((service, Span(
                trace_id=trace_id, span_id=sid, parent_span_id=parent, name=name, kind=kind,
                start_time_unix_nano=t0, end_time_unix_nano=t1, attributes=_kvs(attrs),
                events=events or [],
                status=Status(code=2, message="request failed") if error else Status(code=0),
            )))
            return sid

        span("gateway", wire.REQUEST_SPAN, b"", 2, start, start + total, {
            wire.REQUEST_FINGERPRINT: rng.randbytes(32).hex(),
            wire.REQUEST_FINGERPRINT_KEY_ID: "fpk-2025-01",
            wire.model_name("llm"): llm[0],
            wire.model_version("llm"): llm[1],
            wire.model_name("world_model"): wm[0],
            wire.model_version("world_model"): wm[1],
            wire.model_name("planner"): planner[0],
            wire.model_version("planner"): planner[1],
            wire.REQUEST_OUTCOME: outcome,
            "http.request.method": "POST",
            "url.path": "/v1/plan",
        }, span_id=root_id, error=outcome == "error")

        t = start + 5_000_000
        llm_end = t + total // 3
        input_tokens = rng.randint(200, 4000)
        span("llm", "llm", root_id, 3, t, llm_end, {
            wire.GEN_AI_SYSTEM: "vllm",
            wire.GEN_AI_REQUEST_MODEL: llm[0],
            wire.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
            wire.GEN_AI_USAGE_OUTPUT_TOKENS: rng.randint(20, 800),
            "gen_ai.request.temperature": 0.2,
        })

        wm_start, wm_end = llm_end, llm_end + total // 3
        events = []
        step_ns = (wm_end - wm_start) // 9
        for step in range(8):
            for layer in LAYERS:
                projection = [round(rng.gauss(0.0, 1.0), 6) for _ in range(16)]
                lo, hi = min(projection), max(projection)
                mean = sum(projection) / 16
                events.append(Span.Event(
                    name=wire.STATE_EVENT,
                    time_unix_nano=wm_start + (step + 1) * step_ns,
                    attributes=_kvs({
                        wire.STATE_STEP: step,
                        wire.STATE_LAYER: layer,
                        wire.STATE_SUMMARY: [
                            mean, rng.uniform(0.5, 1.5), lo, hi, rng.uniform(3.0, 5.0)],
                        wire.STATE_PROJECTION: projection,
                    }),
                ))
        span("world_model", wire.ROLLOUT_SPAN, root_id, 1, wm_start, wm_end, {
            "world_model.horizon": 8,
            "world_model.name": wm[0],
        }, events=events)

        candidates = [
            {"action": rng.choice(ACTIONS), "score": round(rng.random(), 4),
             "predicted": {"conflict_probability": round(rng.random() * 0.2, 4),
                           "delay_s": round(rng.uniform(0, 120), 1),
                           "fuel_kg": round(rng.uniform(10, 400), 1)}}
            for _ in range(16)
        ]
        best = max(candidates, key=lambda c: c["score"])
        span("planner", wire.DECISION_SPAN, root_id, 1, wm_end, start + total - 5_000_000, {
            wire.PLANNER_CANDIDATES: json.dumps(candidates),
            wire.PLANNER_CHOSEN: best["action"],
            wire.PLANNER_CONFIDENCE: best["score"],
            wire.PLANNER_CONSTRAINTS: json.dumps(
                ["min_separation_nm>=5", "max_climb_fpm<=3000", "no_restricted_airspace"]),
        })

        for name, service, kind in GENERIC:
            t0 = start + rng.randint(0, total - 2_000_000)
            t1 = t0 + rng.randint(100_000, 2_000_000)
            if name == "http.client":
                attrs = {"http.request.method": rng.choice(("GET", "POST")),
                         "server.address": f"{service}.internal", "server.port": 8080,
                         "url.full": f"http://{service}.internal:8080/api/{rng.randint(1, 99)}",
                         "http.response.status_code": 200}
            elif name == "db.query":
                attrs = {"db.system": "postgresql", "db.operation.name": "SELECT",
                         "db.collection.name": "features", "db.response.returned_rows":
                         rng.randint(0, 50)}
            else:
                attrs = {"component": name.split(".")[0], "thread.id": rng.randint(1, 64),
                         "code.function": name.replace(".", "_"), "cache.hit": rng.random() < 0.7}
            span(service, name, root_id, kind, t0, t1, attrs)
        return spans


def span_stream(seed: int) -> Iterator[tuple[str, Span]]:
    factory = TraceFactory(seed)
    while True:
        yield from factory.trace()


def make_batches(count: int, batch_size: int, seed: int) -> list[bytes]:
    """`count` serialized requests of exactly `batch_size` spans: whole traces as far as they
    fit; a trace cut at the end of a batch continues at the start of the next one."""
    stream = span_stream(seed)
    batches = []
    for _ in range(count):
        by_service: dict[str, list[Span]] = {}
        for _ in range(batch_size):
            service, span = next(stream)
            by_service.setdefault(service, []).append(span)
        request = ExportTraceServiceRequest(resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=_kvs(SERVICES[service])),
                scope_spans=[ScopeSpans(scope=SCOPE, spans=spans)],
            )
            for service, spans in by_service.items()
        ])
        batches.append(request.SerializeToString())
    return batches


# --------------------------------------------------------------------------------------------
# The live server
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------


@dataclass
class SendResult:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def send_all(port: int, key: str, batches: list[bytes], clients: int) -> SendResult:
    """Send every batch once, `clients` threads each on its own persistent connection."""
    work: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    for body in batches:
        work.put(body)
    for _ in range(clients):
        work.put(None)
    result = SendResult()
    lock = threading.Lock()
    headers = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {key}"}
    start_gate = threading.Barrier(clients + 1)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        latencies: list[float] = []
        errors: list[str] = []
        try:
            conn.connect()
            start_gate.wait()
            while (body := work.get()) is not None:
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/v1/traces", body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    conn.close()  # reconnects on the next request
                    continue
                latencies.append(time.perf_counter() - t0)
                if response.status != 200:
                    errors.append(f"HTTP {response.status}: {data[:300]!r}")
                    continue
                answer = ExportTraceServiceResponse()
                answer.ParseFromString(data)
                if answer.HasField("partial_success") and (
                    answer.partial_success.rejected_spans or answer.partial_success.error_message
                ):
                    errors.append(f"partial_success: {answer.partial_success}")
        except threading.BrokenBarrierError:
            errors.append("client could not start")
        finally:
            conn.close()
            with lock:
                result.latencies.extend(latencies)
                result.errors.extend(errors)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait(timeout=60)
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - t0
    return result


def core_row(project_id: int, row: dict) -> dict:
    """The `spans` row the service stores for a parsed span, as a SQLAlchemy Core parameter
    set: JSON columns as Python values, for the engine's JSON serialiser to encode."""
    return {
        "project_id": project_id,
        **{k: row[k] for k in (
            "trace_id", "span_id", "parent_span_id", "name", "kind", "start_time_unix_nano",
            "end_time_unix_nano", "status_code", "status_message", "service_name", "scope_name",
            "attributes", "body_digest")},
        "events": [{"name": n, "time_unix_nano": t, "attributes": a} for n, t, a in row["events"]],
        "links": orjson.loads(row["links_json"]),
        "resource": orjson.loads(row["resource_json"]),
    }


def raw_ceiling(batches: list[bytes], data_dir: Path) -> tuple[float, int]:
    """Seconds to insert the span rows of `batches` with plain executemany, and the row count."""
    from sqlalchemy import insert

    from app.config import Settings
    from app.ingest.normalise import span_rows
    from app.store import schema
    from app.store.engine import create_db_engine, write_transaction
    from app.store.tables import Project
    from app.store.tables import Span as SpanModel

    engine = create_db_engine(Settings(data_dir=data_dir, database_url=""))
    try:
        schema.upgrade(engine)
        with write_transaction(engine) as conn:
            project_id = int(conn.execute(
                insert(Project).values(name="bench").returning(Project.id)).scalar_one())
        prepared = []
        for body in batches:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            prepared.append([core_row(project_id, row) for row in span_rows(request).spans])
        table = SpanModel.__table__
        stmt = insert(table)
        t0 = time.perf_counter()
        for rows in prepared:
            with write_transaction(engine) as conn:
                conn.execute(stmt, rows)
        seconds = time.perf_counter() - t0
    finally:
        engine.dispose()
    return seconds, count_rows(data_dir / "warden.db", "spans")


# --------------------------------------------------------------------------------------------


@dataclass
class ServiceRun:
    sent: SendResult
    stored: tuple[int, int, int]
    rss: float | None
    resolved: int


def run_service(
    env: dict[str, str],
    server_dir: Path,
    warmup: list[bytes],
    measured: list[bytes],
    total_spans: int,
    args: argparse.Namespace,
    say: Any,
    failures: list[str],
) -> ServiceRun:
    """One live `warden serve`: warm up, send the measured batches, check what landed."""
    run_cli(env, "project", "create", "bench")
    key = run_cli(env, "key", "create", "--project", "bench",
                  "--scope", "ingest", "--scope", "read", "--name", "bench").strip()
    if not (key.startswith("wdn_") and len(key) == 42):
        raise RuntimeError(f"unexpected key from `warden key create`: {key!r}")
    server = start_server(server_dir, env, args.server_workers)
    try:
        if env.get("WARDEN_LINEAGE_INTERVAL") == "1":
            time.sleep(5)  # steady state: the resolver has imported MLflow and made its first round
        say(f"  warden serve ready on port {server.port}; warm-up: {len(warmup)} batches")
        warm = send_all(server.port, key, warmup, min(args.clients, max(len(warmup), 1)))
        failures += [f"warm-up: {e}" for e in warm.errors]
        say(f"  sending {len(measured)} batches with {args.clients} client(s) ...")
        sent = send_all(server.port, key, measured, args.clients)
        failures += sent.errors
        status, page = get_json(server.port, key, "/v1/requests?limit=1")
        if status != 200 or not isinstance(page, dict) or not page.get("items"):
            failures.append(f"GET /v1/requests?limit=1 -> {status}: {str(page)[:300]}")
        db = server_dir / "warden.db"
        stored = (count_rows(db, "spans"), count_rows(db, "requests"),
                  count_rows(db, "world_model_states"))  # fmt: skip
        if stored[0] != total_spans:
            failures.append(f"spans table holds {stored[0]} rows, sent {total_spans}")
        time.sleep(1.5 if env.get("WARDEN_LINEAGE_INTERVAL") == "1" else 0)
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            resolved = conn.execute(
                "SELECT count(*) FROM model_versions WHERE status = 'resolved'"
            ).fetchone()[0]
        return ServiceRun(sent, stored, _rss_mb(server.proc.pid), int(resolved))
    except BaseException:
        say(f"server log (last lines):\n{server.tail()}")
        raise
    finally:
        stop_server(server)
        if failures:
            say(f"server log (last lines):\n{server.tail()}")


def register_models(server_dir: Path) -> str:
    """An MLflow store where the world-model versions the traffic names are registered, each
    with a run, a metric and a logged dataset (the other stages' versions are not integers,
    so MLflow cannot hold them: they stay unresolved and are looked up every round)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{server_dir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("bench", artifact_location=str(server_dir / "mlruns"))
    for name in sorted({n for n, _ in WORLD_MODELS}):
        client.create_registered_model(name)
        for _ in range(max(int(v) for n, v in WORLD_MODELS if n == name)):
            run = client.create_run(experiment)
            client.log_metric(run.info.run_id, "val_loss", 0.1)
            data = Dataset(f"{name}-data", "abcd1234", "local", "file:///bench/data.parquet")
            tag = InputTag("mlflow.data.context", "training")
            client.log_inputs(run.info.run_id, datasets=[DatasetInput(data, [tag])])
            client.create_model_version(
                name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
            )
    return uri


def main() -> int:
    if "--overload" in sys.argv[1:]:
        # Ingest past its capacity: bench/overload.py, which takes the remaining options.
        from bench import overload

        return overload.main([a for a in sys.argv[1:] if a != "--overload"])
    parser = argparse.ArgumentParser(
        description=(
            "Warden ingest benchmark. Starts `warden serve` on a free port with a fresh "
            "SQLite store (WAL, synchronous=FULL), sends pre-serialized OTLP/protobuf batches "
            "of synthetic hybrid-AI traces (20 spans per trace: request, llm, "
            "world_model.rollout with 16 state events, planner.decide, 16 generic spans) "
            "to POST /v1/traces, and compares the end-to-end spans/s with the raw ceiling: "
            "the same span rows inserted into SQLite by one SQLAlchemy Core executemany per "
            "batch. Prints figures; asserts nothing about time."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--batches", type=int, default=200,
                        help="measured batches (200 x 512 = 102,400 spans)")
    parser.add_argument("--clients", type=int, default=4,
                        help="concurrent client threads, one persistent HTTP connection each "
                             "(like several exporters or a Collector's connection pool)")
    parser.add_argument("--batch-size", type=int, default=512, help="spans per export request")
    parser.add_argument("--warmup", type=int, default=4,
                        help="batches sent first and not counted in the timing")
    parser.add_argument("--server-workers", type=int, default=os.cpu_count() or 1,
                        help="`warden serve --workers N` (worker processes of the server; "
                             "the default is one per core, as the README recommends)")
    parser.add_argument("--seed", type=int, default=20250101, help="seed of the span generator")
    parser.add_argument("--no-lineage", dest="lineage", action="store_false",
                        help="skip the second run with MLflow lineage resolution enabled")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds of lineage off / on, each side's median counts "
                             "(default 3); on PostgreSQL, end-to-end runs (default 1)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql: start a PostgreSQL server of its own (durable) and "
                             "compare end to end with raw COPY and raw executemany of the "
                             "same span and state rows (bench/ingest_postgresql.py)")
    parser.add_argument("--json", action="store_true",
                        help="also print the figures as one JSON line at the end")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary data dirs (and the server log) for inspection")
    args = parser.parse_args()
    if min(args.batches, args.clients, args.batch_size, args.server_workers) < 1 or args.warmup < 0:
        parser.error("--batches, --clients, --batch-size and --server-workers must be >= 1, "
                     "--warmup >= 0")
    if not WARDEN.exists():
        parser.error(f"no `warden` entry point next to {sys.executable}")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    say(f"generating {args.warmup + args.batches} batches of {args.batch_size} spans ...")
    t0 = time.perf_counter()
    all_batches = make_batches(args.warmup + args.batches, args.batch_size, args.seed)
    warmup, measured = all_batches[: args.warmup], all_batches[args.warmup :]
    total_spans = len(all_batches) * args.batch_size
    measured_spans = len(measured) * args.batch_size
    payload_mb = sum(map(len, measured)) / 1e6
    say(f"  done in {time.perf_counter() - t0:.1f}s "
        f"({payload_mb / len(measured) * 1000:.0f} kB per batch)")

    tmp = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    if args.database == "postgresql":
        from bench import ingest_postgresql

        try:
            return ingest_postgresql.run(args, warmup, measured, tmp, say)
        finally:
            if args.keep:
                say(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    args.rounds = 3 if args.rounds is None else args.rounds
    raw_dir = tmp / "raw"
    raw_dir.mkdir()
    failures: list[str] = []
    try:
        # Lineage off and on run in interleaved rounds, the order flipped every round, and
        # each side is summarised by its median: the machine's noise drifts over minutes.
        runs: dict[str, list[ServiceRun]] = {"off": [], "on": []}
        labels = ("off", "on") if args.lineage else ("off",)
        for round_no in range(args.rounds if args.lineage else 1):
            for label in labels if round_no % 2 == 0 else labels[::-1]:
                server_dir = tmp / f"server-lineage-{label}-{round_no}"
                server_dir.mkdir()
                env = clean_env(server_dir)
                if label == "on":
                    # Resolution every second against a store that knows every version the
                    # traffic names: the resolver has real MLflow work to do during the run.
                    env["WARDEN_LINEAGE_INTERVAL"] = "1"
                    env["WARDEN_MLFLOW_TRACKING_URI"] = register_models(server_dir)
                else:
                    env["WARDEN_LINEAGE_INTERVAL"] = "0"
                say(f"round {round_no + 1}, lineage resolution {label}:")
                runs[label].append(
                    run_service(env, server_dir, warmup, measured, total_spans, args, say, failures)
                )
        off_rates = [measured_spans / r.sent.seconds for r in runs["off"]]
        on_rates = [measured_spans / r.sent.seconds for r in runs["on"]]
        first = runs["off"][0]
        sent = first.sent
        e2e_rate = statistics.median(off_rates)
        stored_spans, stored_requests, stored_states = first.stored
        server_rss = first.rss
        lineage_rate = statistics.median(on_rates) if on_rates else None
        resolved = min(r.resolved for r in runs["on"]) if on_rates else 0

        say("raw ceiling: direct executemany into a fresh SQLite file ...")
        raw_seconds, raw_count = raw_ceiling(measured, raw_dir)
        raw_rate = measured_spans / raw_seconds
        if raw_count != measured_spans:
            failures.append(f"raw ceiling stored {raw_count} rows, expected {measured_spans}")
    finally:
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ratio = e2e_rate / raw_rate
    lat = sorted(sent.latencies)
    p50 = statistics.median(lat) * 1000 if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
    machine = {
        "nproc": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count()),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(terse=True),
    }

    def ok(flag: bool) -> str:
        if failures:
            return "n/a (data checks failed)"
        return "met" if flag else "NOT met"

    rows = [
        ("spans sent (measured + warm-up)",
         f"{measured_spans:,} + {len(warmup) * args.batch_size:,}"),
        ("batches x spans, clients", f"{len(measured)} x {args.batch_size}, {args.clients}"),
        ("server worker processes", f"{args.server_workers}"),
        ("payload per batch", f"{payload_mb / len(measured) * 1000:.0f} kB"),
        ("end-to-end wall time (first run)", f"{sent.seconds:.2f} s"),
        ("end-to-end (median of runs)", f"{e2e_rate:,.0f} spans/s"),
        ("  each run, lineage off", ", ".join(f"{r / 1000:.1f}k" for r in off_rates)),
        ("request latency p50 / p99", f"{p50:.0f} ms / {p99:.0f} ms"),
        ("raw ceiling insert time", f"{raw_seconds:.2f} s"),
        ("raw ceiling", f"{raw_rate:,.0f} spans/s"),
        ("ratio end-to-end / ceiling", f"{ratio:.1%}"),
        *([("end-to-end, lineage resolution on", f"{lineage_rate:,.0f} spans/s"),
           ("  each run, lineage on", ", ".join(f"{r / 1000:.1f}k" for r in on_rates)),
           ("  ratio on / off (target >= 90%)", f"{lineage_rate / e2e_rate:.1%}"),
           ("  model versions resolved", f"{resolved}")] if lineage_rate else []),
        ("stored: spans / requests / states",
         f"{stored_spans:,} / {stored_requests:,} / {stored_states:,}"),
        ("server RSS at end", f"{server_rss:.0f} MB" if server_rss else "n/a"),
    ]
    width = max(len(label) for label, _ in rows)
    print()
    print("Warden ingest benchmark (SQLite WAL, synchronous=FULL)")
    print("-" * (width + 24))
    for label, value in rows:
        print(f"{label:<{width}}  {value:>20}")
    print("-" * (width + 24))
    print(f"target: >= {TARGET_SPANS_PER_S:,} spans/s end to end and >= {TARGET_RATIO:.0%} "
          "of the raw ceiling")
    print(f"  end to end >= {TARGET_SPANS_PER_S:,} spans/s: "
          f"{ok(e2e_rate >= TARGET_SPANS_PER_S)}; ratio >= {TARGET_RATIO:.0%}: "
          f"{ok(ratio >= TARGET_RATIO)}")
    if lineage_rate:
        print(f"  lineage resolution on >= 90% of off: {ok(lineage_rate >= 0.9 * e2e_rate)}")
    print(f"machine: nproc={machine['nproc']}, python {machine['python']}, "
          f"sqlite {machine['sqlite']}, {machine['platform']}")
    if failures:
        print(f"\nDATA CHECKS FAILED ({len(failures)}):")
        for failure in failures[:20]:
            print(f"  {failure}")
    else:
        print("data checks: every answer 200 without rejections; /v1/requests answers; "
              "spans table row count equals spans sent")
    if args.json:
        print(json.dumps({
            "end_to_end_spans_per_s": round(e2e_rate, 1),
            "raw_ceiling_spans_per_s": round(raw_rate, 1),
            "ratio": round(ratio, 4),
            "end_to_end_runs_spans_per_s": [round(r, 1) for r in off_rates],
            "lineage_on_spans_per_s": round(lineage_rate, 1) if lineage_rate else None,
            "lineage_on_runs_spans_per_s": [round(r, 1) for r in on_rates],
            "end_to_end_seconds": round(sent.seconds, 3),
            "raw_ceiling_seconds": round(raw_seconds, 3),
            "latency_p50_ms": round(p50, 1),
            "latency_p99_ms": round(p99, 1),
            "batches": len(measured),
            "batch_size": args.batch_size,
            "clients": args.clients,
            "server_workers": args.server_workers,
            "warmup_batches": len(warmup),
            "spans_sent": total_spans,
            "spans_stored": stored_spans,
            "target_spans_per_s": TARGET_SPANS_PER_S,
            "target_ratio": TARGET_RATIO,
            "failures": len(failures),
            "machine": machine,
        }))
    return 1 if failures else 0


def _rss_mb(pid: int) -> float | None:
    """Resident memory of the server process tree (Linux /proc), in MB."""
    try:
        pids = [pid]
        children = Path(f"/proc/{pid}/task/{pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        total = 0
        for p in pids:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total / 1024
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
