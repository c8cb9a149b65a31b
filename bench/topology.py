"""Throughput of the several-process topology: spans/s with 1 and with 2 API processes.

Run from the repository root:

    .venv/bin/python bench/topology.py                    # 120 batches of 25 requests
    .venv/bin/python bench/topology.py --batches 60 --clients 3

What it runs (tests/topology.py, the same harness tests/test_topology.py checks): a
PostgreSQL server of its own with durability on (`tests.servers.postgres_server(durable=True)`),
an `mlflow server` on it, one `warden serve --role worker` and `warden serve --role api`
processes with data folders of their own. The traffic is pre-encoded OTLP/protobuf export
requests of demo requests (an LLM call, a world-model rollout with 16 latent states, a
planner decision: 4 spans each), sent by `--clients` threads per API process, each on a
persistent connection. Wall time from the first request to the last answer -> spans/s.

Beside each figure it prints the CPU each part used (from /proc: the API processes, the
PostgreSQL server's processes, the worker, this client) in cores, the machine's other
processes (a shared machine's other users) and the whole machine's busy share, so the run says
what limits it; from this deployment's own CPU per span it estimates the spans/s it would reach
with every core to itself. It prints figures and asserts nothing about time;
a data check (every batch acknowledged, every request stored once) fails the run (exit 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds scripts named like the packages they measure: the repository root comes first.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from sqlalchemy import func, select

from app.store.engine import read_connection
from app.store.tables import Request
from tests.servers import PostgresServer, postgres_server
from tests.topology import Batch, Sender, Served, Topology, batches, topology

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes used so far."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def group(leader: int) -> list[int]:
    """The processes of a `warden serve` (its session: uvicorn and any worker processes)."""
    found = []
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None and int(fields[3]) == leader:  # session id
            found.append(pid)
    return found


def postgres_pids(pg: PostgresServer) -> list[int]:
    """The postmaster listening on the server's port, and its backends."""
    postmaster = None
    for pid in _pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"postgres") and str(pg.port).encode() in b" ".join(argv):
            postmaster = pid
            break
    if postmaster is None:
        return []
    children = [pid for pid in _pids() if (f := _stat(pid)) is not None and int(f[1]) == postmaster]
    return [postmaster, *children]


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every user's processes."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


@dataclass
class Run:
    apis: int
    spans: int
    requests: int
    seconds: float
    cpu: dict[str, float]  # cores used, by part
    failures: int

    @property
    def spans_per_s(self) -> float:
        return self.spans / self.seconds


def measure(
    topo: Topology, pg: PostgresServer, apis: list[Served], worker: Served, work: list[Batch],
    clients: int,
) -> Run:  # fmt: skip
    """Send `work` through `clients` threads per API process; the CPU each part used."""
    parts: dict[str, Callable[[], list[int]]] = {
        "API processes": lambda: [p for api in apis for p in group(api.proc.pid)],
        "PostgreSQL": lambda: postgres_pids(pg),
        "worker": lambda: group(worker.proc.pid),
    }
    before = {name: cpu_seconds(pids()) for name, pids in parts.items()}
    client_before = sum(os.times()[:2])
    busy_before, total_before = machine_busy()
    started = time.perf_counter()
    sender = Sender(topo, [api for api in apis for _ in range(clients)], work).start()
    sender.join()
    seconds = time.perf_counter() - started
    # Backends that ended during the run are missed; the pool keeps them open throughout.
    cpu = {name: (cpu_seconds(pids()) - before[name]) / seconds for name, pids in parts.items()}
    cpu["client (this process)"] = (sum(os.times()[:2]) - client_before) / seconds
    busy, total = machine_busy()
    cores = os.cpu_count() or 1
    machine = (busy - busy_before) / (total - total_before) * cores
    cpu["other processes of the machine"] = max(0.0, machine - sum(cpu.values()))
    cpu["machine, every process"] = machine
    failures = sender.failures + len(sender.queue)
    return Run(len(apis), sender.spans, len(sender.acked), seconds, cpu, failures)


OURS = ("API processes", "PostgreSQL", "worker", "client (this process)")


def limit(run: Run, cores: int) -> str:
    """What held the run back, read from the CPU figures: whether the cores were full, who
    else used them, and how this deployment's own CPU per span splits."""
    busy = run.cpu["machine, every process"]
    others = run.cpu["other processes of the machine"]
    ours = sum(run.cpu[part] for part in OURS)
    split = ", ".join(f"{part} {run.cpu[part] / ours:.0%}" for part in OURS[:2])
    # CPU seconds per span of this deployment's processes -> spans/s if they had every core.
    alone = cores * run.spans_per_s / ours
    state = "CPU-bound" if busy >= 0.9 * cores else "not CPU-bound (the rest is waiting)"
    return (
        f"the machine was {busy / cores:.0%} busy ({state}); other processes took "
        f"{others:.2f} cores. Of this deployment's CPU per span: {split}; with the "
        f"{cores} cores to itself: about {alone:,.0f} spans/s"
    )


def stored(topo: Topology) -> tuple[int, int]:
    with read_connection(topo.engine) as conn:
        row = conn.execute(select(func.count(), func.count(func.distinct(Request.trace_id)))).one()
    return int(row[0]), int(row[1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--batches", type=int, default=120, help="export requests per run")
    parser.add_argument("--per-batch", type=int, default=25, help="demo requests per export")
    parser.add_argument("--clients", type=int, default=2, help="client threads per API")
    parser.add_argument("--warmup", type=int, default=10, help="batches before each run")
    args = parser.parse_args()

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    runs: list[Run] = []
    failures: list[str] = []
    sent = 0
    with (
        postgres_server(durable=True) as pg,
        tempfile.TemporaryDirectory(prefix="warden-topology-") as folder,
        topology(pg, Path(folder)) as topo,
    ):
        say("starting the worker and the first API process")
        worker = topo.start("worker", "worker")
        apis = [topo.start("api-1", "api")]
        for count, seed in ((1, 1), (2, 2)):
            if count == 2:
                say("starting the second API process")
                apis.append(topo.start("api-2", "api"))
            warm = batches(args.warmup, args.per_batch, seed=seed * 100)
            work = batches(args.batches, args.per_batch, seed=seed)
            say(f"{count} API process(es): warm-up, then {len(work)} batches")
            measure(topo, pg, apis, worker, warm, args.clients)
            run = measure(topo, pg, apis, worker, work, args.clients)
            runs.append(run)
            sent += (len(warm) + len(work)) * args.per_batch
            if run.failures:
                failures.append(f"{count} API: {run.failures} batches not acknowledged")
        rows, distinct = stored(topo)
        if rows != sent or distinct != sent:
            failures.append(f"{sent} requests sent, {rows} stored ({distinct} distinct)")

    cores = os.cpu_count() or 1
    width = 30
    print()
    title = "Warden topology benchmark: PostgreSQL (durable), 1 worker"
    print(f"{title}; {args.clients} client threads per API, {args.per_batch} requests (x4 "
          f"spans) per export, {cores} cores")  # fmt: skip
    print("-" * (width + 32))
    print(f"{'':<{width}}{'1 API':>16}{'2 APIs':>16}")
    print(f"{'spans/s':<{width}}" + "".join(f"{r.spans_per_s:>16,.0f}" for r in runs))
    print(f"{'requests/s':<{width}}"
          + "".join(f"{r.requests / r.seconds:>16,.0f}" for r in runs))  # fmt: skip
    print(f"{'wall seconds':<{width}}" + "".join(f"{r.seconds:>16.1f}" for r in runs))
    print("CPU used, in cores:")
    for part in runs[0].cpu:
        print(f"  {part:<{width - 2}}" + "".join(f"{r.cpu[part]:>16.2f}" for r in runs))
    print("CPU ms per 1,000 spans:")
    for part in OURS[:2]:
        print(f"  {part:<{width - 2}}"
              + "".join(f"{1e6 * r.cpu[part] / r.spans_per_s:>16.0f}" for r in runs))  # fmt: skip
    print("-" * (width + 32))
    one, two = runs
    print(f"2 APIs / 1 API: {two.spans_per_s / one.spans_per_s:.2f}x")
    for run in runs:
        print(f"{run.apis} API: {limit(run, cores)}")
    if failures:
        print(f"\nDATA CHECKS FAILED ({len(failures)}):")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print("data checks: every batch acknowledged; every request stored once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
