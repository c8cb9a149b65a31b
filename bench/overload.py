"""Ingest overload benchmark: a live `warden serve` fed three times what it can take.

Run from the repository root (or as `bench/ingest.py --overload`):

    .venv/bin/python bench/overload.py
    .venv/bin/python bench/overload.py --factor 3 --seconds 15 --unbounded

What it does, in one run against a fresh SQLite store (the defaults: WAL, synchronous=FULL):

1. Capacity: closed-loop clients send batches of 512-span OTLP/protobuf traces (bench/ingest.py
   makes them) as fast as answers come -> batches/s the server takes.
2. Overload: an open-loop sender starts `--factor` times that many batches per second for
   `--seconds`, each on its own client thread, whatever the server answers. A client treats
   an answer as OTLP exporters do: 200 is acknowledged; 429/503 with `Retry-After` is retried
   after that many seconds, for as long as `--drain` seconds past the end of the sending.
   The server's resident memory (the process tree's, from /proc) is sampled throughout.
3. Checks: the share of answers that were 429/503 with `Retry-After`, the peak RSS, latency
   of the answers, and the spans the database holds against the spans acknowledged with 200:
   every acknowledged span must be stored, and nothing refused may be (exit status 1 if not).

`--unbounded` repeats the overload on a server whose bound is out of reach
(`WARDEN_INGEST_MAX_PENDING=1000000`), for comparison. It prints figures; it asserts
nothing about time.
"""

from __future__ import annotations

import argparse
import http.client
import math
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.ingest import make_batches, send_all
from bench.warden_process import (
    WARDEN,
    Server,
    clean_env,
    count_rows,
    run_cli,
    start_server,
    stop_server,
)

PROTOBUF = "application/x-protobuf"


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (Linux /proc), in MB; 0 if unreadable."""
    total = 0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        for p in pids:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    except (OSError, ValueError):
        return 0.0
    return total / 1024


class RssSampler:
    """Samples the server's RSS every 50 ms in a thread; `peak` since the last `reset`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, tree_rss_mb(self.pid))

    def reset(self) -> float:
        now = tree_rss_mb(self.pid)
        self.peak = now
        return now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Overload:
    answers: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # per kind of answer
    delivery: list[float] = field(default_factory=list)  # first try to 200, per batch
    acknowledged_batches: int = 0
    acknowledged_spans: int = 0
    retried_then_acknowledged: int = 0
    never_acknowledged: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def post(port: int, key: str, body: bytes) -> tuple[int, str | None, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/traces", body=body,
                     headers={"Content-Type": PROTOBUF, "Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Retry-After"), time.perf_counter() - t0
    finally:
        conn.close()


def overload(port: int, key: str, batches: list[bytes], spans_per_batch: int, rate: float,
             drain: float) -> Overload:  # fmt: skip
    """Start one batch every 1/rate seconds on a thread of its own; each retries refusals
    after their Retry-After until `drain` seconds past the last start."""
    result = Overload()
    give_up = time.monotonic() + len(batches) / rate + drain

    def deliver(body: bytes) -> None:
        start = time.perf_counter()
        tries = 0
        while True:
            tries += 1
            try:
                status, retry_after, seconds = post(port, key, body)
            except (OSError, http.client.HTTPException) as exc:
                with result.lock:
                    result.answers["connection error"] += 1
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                    result.never_acknowledged += 1
                return
            kind = (f"{status} with Retry-After" if status in (429, 503) and retry_after
                    else str(status))  # fmt: skip
            with result.lock:
                result.answers[kind] += 1
                result.latencies.setdefault(kind, []).append(seconds)
            if status == 200:
                with result.lock:
                    result.acknowledged_batches += 1
                    result.acknowledged_spans += spans_per_batch
                    result.retried_then_acknowledged += tries > 1
                    result.delivery.append(time.perf_counter() - start)
                return
            wait = float(retry_after) if retry_after else math.inf
            if time.monotonic() + wait > give_up:
                with result.lock:
                    result.never_acknowledged += 1
                return
            time.sleep(wait)

    threads = []
    t0 = time.monotonic()
    for n, body in enumerate(batches):
        time.sleep(max(0.0, t0 + n / rate - time.monotonic()))
        thread = threading.Thread(target=deliver, args=(body,), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return result


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(label: str, env_extra: dict[str, str], args: argparse.Namespace,
        say: Callable[[str], None]) -> bool:  # fmt: skip
    """One server: measure capacity, overload it, check the database. True when no
    acknowledged span is missing and nothing unacknowledged was stored."""
    data_dir = Path(tempfile.mkdtemp(prefix="warden-overload-"))
    env = clean_env(data_dir) | {"WARDEN_LINEAGE_INTERVAL": "0", "WARDEN_DRIFT_TICK": "0",
                                 **env_extra}  # fmt: skip
    run_cli(env, "project", "create", "bench")
    key = run_cli(env, "key", "create", "--project", "bench", "--scope", "ingest",
                  "--name", "bench").strip()  # fmt: skip
    server: Server = start_server(data_dir, env, args.server_workers)
    sampler = RssSampler(server.proc.pid)
    db = data_dir / "warden.db"
    try:
        say(f"[{label}] measuring capacity: {args.capacity_batches} batches, "
            f"{args.clients} closed-loop clients ...")  # fmt: skip
        probe = make_batches(args.capacity_batches, args.batch_size, args.seed)
        sent = send_all(server.port, key, probe, args.clients)
        if sent.errors:
            say(f"[{label}] capacity run answers other than 200: {sent.errors[:3]}")
        capacity = args.capacity_batches / sent.seconds
        rate = args.factor * capacity
        count = max(1, int(rate * args.seconds))
        say(f"[{label}] generating {count} batches for {args.seconds:.0f}s at {rate:.1f}/s ...")
        batches = make_batches(count, args.batch_size, args.seed + 1)
        before = count_rows(db, "spans")
        baseline = sampler.reset()
        result = overload(server.port, key, batches, args.batch_size, rate, args.drain)
        peak = sampler.peak
        stored = count_rows(db, "spans") - before
    finally:
        sampler.stop()
        stop_server(server)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    answers = sum(result.answers.values())
    refused = sum(n for kind, n in result.answers.items() if "Retry-After" in kind)
    lost = result.acknowledged_spans - stored if stored <= result.acknowledged_spans else 0
    unacknowledged_stored = max(0, stored - result.acknowledged_spans)
    print(f"{label}")
    print(f"  capacity: {capacity:.1f} batches/s = {capacity * args.batch_size:,.0f} spans/s "
          f"({args.clients} closed-loop clients, {args.batch_size} spans per batch)")
    print(f"  offered: {rate:.1f} batches/s ({args.factor:g} x capacity) for {args.seconds:.0f}s "
          f"= {count} batches, each retried after Retry-After for up to {args.drain:.0f}s more")
    print(f"  answers: {answers}: " + ", ".join(f"{k}: {v}" for k, v in
                                                sorted(result.answers.items())))  # fmt: skip
    print(f"  share of answers that were 429/503 with Retry-After: {refused / answers:.1%}")
    for kind, seconds in sorted(result.latencies.items()):
        print(f"  latency of {kind} answers: p50 {quantile(seconds, 0.5) * 1000:.0f} ms, "
              f"p99 {quantile(seconds, 0.99) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms")
    print(f"  batches acknowledged: {result.acknowledged_batches} of {count} "
          f"({result.retried_then_acknowledged} after retries; "
          f"{result.never_acknowledged} not acknowledged by the end); delivery p50 "
          f"{statistics.median(result.delivery or [math.nan]):.2f}s")
    print(f"  server RSS: {baseline:.0f} MB before the overload, peak {peak:.0f} MB during it")
    print(f"  spans acknowledged: {result.acknowledged_spans:,}; stored in the database: "
          f"{stored:,}; acknowledged spans lost: {lost}; stored without acknowledgement: "
          f"{unacknowledged_stored}")
    for error in result.errors[:5]:
        print(f"  error: {error}")
    return lost == 0 and unacknowledged_stored == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Warden ingest under overload: the share of 429/503 with Retry-After, the "
        "server's peak RSS and the acknowledged spans lost (0 expected), at a multiple of the "
        "measured capacity.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--factor", type=float, default=3.0, help="offered load / capacity")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long load is offered")
    parser.add_argument("--drain", type=float, default=60.0,
                        help="seconds past the sending a refused batch is still retried")
    parser.add_argument("--capacity-batches", type=int, default=60,
                        help="batches of the capacity measurement")
    parser.add_argument("--clients", type=int, default=4,
                        help="closed-loop clients of the capacity measurement")
    parser.add_argument("--batch-size", type=int, default=512, help="spans per export request")
    parser.add_argument("--server-workers", type=int, default=1,
                        help="`warden serve --workers N`; the bound is per process")
    parser.add_argument("--seed", type=int, default=20250101, help="seed of the span generator")
    parser.add_argument("--unbounded", action="store_true",
                        help="also overload a server whose bound is out of reach, to compare")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs")
    args = parser.parse_args(argv)
    if not WARDEN.exists():
        parser.error(f"no `warden` entry point next to {sys.executable}")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    ok = run("bounded (the default ingest_max_pending)", {}, args, say)
    if args.unbounded:
        run("for comparison, unbounded (WARDEN_INGEST_MAX_PENDING=1000000)",
            {"WARDEN_INGEST_MAX_PENDING": "1000000"}, args, say)  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
