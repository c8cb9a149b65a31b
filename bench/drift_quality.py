"""Drift quality benchmark: false-positive and detection rates per kind, on the reference
stack's traffic.

Run from the repository root:

    .venv/bin/python bench/drift_quality.py                  # 100 + 100 trials, shift 1.0
    .venv/bin/python bench/drift_quality.py --shift 0.3 --trials 50
    .venv/bin/python bench/drift_quality.py --stream 3000 --step 100

What it does, in one run:

1. Starts a real `warden serve` (SQLite, fresh data folder, lineage resolution on), trains and
   registers the booking world model in a local MLflow store (as `warden demo` does), and
   sends three pools of requests through the instrumented stack: two without shift and one at
   `--shift` (examples/booking/sim.py documents what a shift of 1.0 moves: it is the demo's
   `--shift`, and this benchmark's default; at 0.5 decision drift is the first kind to miss
   some trials with 500-request windows).
2. Reads the pools back from the store with the drift job's own loader, and the training
   dataset through the version's MLflow lineage, as the job does.
3. Runs seeded trials: each draws a reference window (`--reference` requests of the first
   unshifted pool) and a current window (`--current` requests of the second unshifted pool,
   or of the shifted pool) and judges it with the job's own detectors, for inputs (against
   the training dataset), latent states and decisions (against the reference window).
4. Prints, per kind, the share of unshifted trials judged `drift` (false positives) and the
   share of shifted trials judged `drift` (detection). Targets: detection >= 95%, false
   positives <= 5%.
5. The stateful stream: the trials above draw independent samples, but one `warden demo` run
   is a stream whose requests share one calendar (the assistant's bookings stay in it until
   other people's bookings replace them), so neighbouring requests are not independent. So it
   also sends one unshifted run of `--stream` requests and judges it as the drift job would
   at every `--step` requests along it: the newest `--current` requests against each traffic
   reference the job can take there: `--reference` requests evenly spaced across the
   version's first ten times as many before the current window (the default, `reference =
   "spread"`), the version's first `--reference` (`"first"`), and the `--reference` just
   before the current window (`"preceding"`). Prints each kind's share of positions judged
   `drift` (false positives: the traffic is unshifted) and `warn`, per reference.

It asserts nothing; a failed data check (a lost request) exits 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import numpy as np

from bench.warden_process import clean_env, run_cli, start_server, stop_server

KINDS = ("input", "latent", "decision")
TARGET_DETECTION = 0.95
TARGET_FALSE_POSITIVES = 0.05


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Drift quality: false positives and detection per kind over seeded trials "
        "on the booking stack's traffic. Prints figures; asserts nothing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--trials", type=int, default=100, help="trials with and without shift")
    parser.add_argument("--shift", type=float, default=1.0, help="shift size in [0, 1]")
    parser.add_argument("--reference", type=int, default=500, help="requests per reference")
    parser.add_argument("--current", type=int, default=500, help="requests per current window")
    parser.add_argument("--pool", type=int, default=2500, help="requests per pool")
    parser.add_argument(
        "--stream", type=int, default=2000, help="requests of the stateful run (0: none)"
    )
    parser.add_argument(
        "--step", type=int, default=50, help="requests between the stateful run's judged positions"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args()
    if not 0 < args.shift <= 1:
        parser.error("--shift must be in (0, 1]")
    if max(args.reference, args.current) > args.pool:
        parser.error("--pool must hold at least --reference and --current requests")
    if args.stream and args.stream < args.reference + args.current:
        parser.error("--stream must hold at least --reference plus --current requests")

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from sqlalchemy import select

    from app.config import Settings
    from app.drift import reference as references
    from app.drift import windows
    from app.drift.detectors.decisions import DecisionDetector
    from app.drift.detectors.inputs import InputDetector
    from app.drift.detectors.latent import LatentDetector
    from app.drift.detectors.protocol import Options, Skipped
    from app.drift.detectors.sample import Sample
    from app.registry import lineage
    from app.store.engine import create_db_engine
    from app.store.tables import ModelVersion
    from app.tenancy import projects
    from examples.booking import demo

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="warden-drift-quality-"))
    data = tmp / "data"
    data.mkdir()
    tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = clean_env(data)
    env["WARDEN_LINEAGE_INTERVAL"] = "0"
    env["WARDEN_DRIFT_TICK"] = "0"
    run_cli(env, "project", "create", "bench")
    key = run_cli(env, "key", "create", "--project", "bench", "--scope", "ingest").strip()
    server = start_server(data, env)
    bounds: dict[str, windows.Bounds] = {}
    try:
        sends = [("reference", 11, 0.0, args.pool), ("unshifted", 12, 0.0, args.pool),
                 ("shifted", 13, args.shift, args.pool)]  # fmt: skip
        if args.stream:
            sends.append(("stream", 14, 0.0, args.stream))
        for pool, seed, shift, size in sends:
            say(f"sending the {pool} pool: {size} requests (shift {shift}) ...")
            started = time.time_ns()
            t0 = time.perf_counter()
            result = demo.run(
                server.url, key, tracking_uri, fingerprint_secret="bench",
                spool_dir=tmp / f"spool-{pool}", requests=size, seed=seed, shift=shift,
                log=say,
            )  # fmt: skip
            if not result.delivered or result.stats.get("dropped"):
                say(f"DATA CHECK FAILED: pool {pool} not delivered whole: {result.stats}")
                return 1
            bounds[pool] = windows.Bounds(started, time.time_ns())
            say(f"  {size / (time.perf_counter() - t0):.0f} requests/s")
    finally:
        stop_server(server)

    settings = Settings(data_dir=data, mlflow_tracking_uri=tracking_uri)
    engine = create_db_engine(settings)
    lineage.resolve_pending(engine, lineage.mlflow_client(tracking_uri))
    project_id = projects.project_id(engine, "bench")
    with engine.connect() as conn:
        name, version = conn.execute(
            select(ModelVersion.name, ModelVersion.version).where(
                ModelVersion.role == "world_model"
            )
        ).one()
    pools = {p: windows.load(engine, project_id, name, version, b) for p, b in bounds.items()}
    for pool, window in pools.items():
        if window.requests != (args.stream if pool == "stream" else args.pool):
            say(f"DATA CHECK FAILED: {window.requests} requests stored in pool {pool}")
            return 1
    dataset = references.training_dataset(engine, project_id, name, version)
    frame = references.DatasetCache(tmp / "cache").load(dataset, list(pools["reference"].features))
    # The job's options at the default settings (min_requests 50), no HTML reports.
    options = Options(permutations=100, artifacts=False)
    inputs = InputDetector(options).fit(Sample(frame))
    say(f"model {name} v{version}; training dataset {dataset.get('name')} ({len(frame)} rows)")

    verdicts: dict[tuple[str, str], Counter[str]] = {
        (kind, case): Counter() for kind in KINDS for case in ("unshifted", "shifted")
    }
    seconds: Counter[str] = Counter()
    t_all = time.perf_counter()
    for trial in range(args.trials):
        rng = np.random.default_rng(trial)
        ref = pools["reference"].subset(rng.choice(args.pool, args.reference, replace=False))
        reference, seeded = ref.sample(), Options(permutations=100, seed=trial, artifacts=False)
        for case in ("unshifted", "shifted"):
            cur = pools[case].subset(rng.choice(args.pool, args.current, replace=False)).sample()
            judges = {
                "input": lambda c=cur: inputs.test(c),
                "latent": lambda c=cur, r=reference, o=seeded: LatentDetector(o).fit(r).test(c),
                "decision": lambda c=cur, r=reference: DecisionDetector(options).fit(r).test(c),
            }
            for kind, judge in judges.items():
                t0 = time.perf_counter()
                try:
                    verdicts[(kind, case)][judge().verdict] += 1
                except Skipped as skip:
                    verdicts[(kind, case)][f"skipped: {skip}"] += 1
                seconds[kind] += time.perf_counter() - t0
        if (trial + 1) % 10 == 0:
            say(f"  {trial + 1}/{args.trials} trials ({time.perf_counter() - t_all:.0f}s)")

    print()
    print("Warden drift quality benchmark (booking stack, seeded trials)")
    print(f"trials: {args.trials} without shift + {args.trials} with shift {args.shift} "
          f"(sim.py: the demo's --shift is 1.0)")  # fmt: skip
    print(f"windows: reference {args.reference} requests, current {args.current}; inputs "
          f"against the training dataset ({len(frame)} rows)")  # fmt: skip
    header = f"{'kind':<10}{'false positives':>17}{'detection':>11}{'warn (no shift)':>17}" + (
        f"{'ms/trial':>10}"
    )
    print("-" * len(header))
    print(header)
    print("-" * len(header))
    met = True
    for kind in KINDS:
        calm, moved = verdicts[(kind, "unshifted")], verdicts[(kind, "shifted")]
        fp, det = calm["drift"] / args.trials, moved["drift"] / args.trials
        warn = calm["warn"] / args.trials
        met &= fp <= TARGET_FALSE_POSITIVES and det >= TARGET_DETECTION
        per_trial = 1000 * seconds[kind] / (2 * args.trials)
        print(f"{kind:<10}{fp:>17.1%}{det:>11.1%}{warn:>17.1%}{per_trial:>10.0f}")
        others = {k: v for k, v in (calm + moved).items() if k.startswith("skipped")}
        for reason, n in others.items():
            print(f"  {n} trials {reason}")
    print("-" * len(header))
    print(f"targets: detection >= {TARGET_DETECTION:.0%}, false positives <= "
          f"{TARGET_FALSE_POSITIVES:.0%} per kind: {'met' if met else 'NOT met'}")  # fmt: skip
    if args.stream:
        print()
        _stateful(args, pools["stream"], inputs, say)
    engine.dispose()
    if args.keep:
        say(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _stateful(args: argparse.Namespace, stream: Any, inputs: Any, say: Any) -> None:
    """Judge the stateful run at every `--step` requests along it (see the docstring, 5.)."""
    from app.drift.detection import evenly_spaced
    from app.drift.detectors.decisions import DecisionDetector
    from app.drift.detectors.latent import LatentDetector
    from app.drift.detectors.protocol import Options, Skipped
    from app.drift.plan import REFERENCE_SPREAD

    r, c = args.reference, args.current
    options = Options(permutations=100, artifacts=False)

    def spread(end: int) -> np.ndarray:
        period = min(end - c, r * REFERENCE_SPREAD)
        return evenly_spaced(period, min(r, period))

    references = {"spread": spread,
                  "first": lambda _end: np.arange(r),
                  "preceding": lambda end: np.arange(end - c - r, end - c)}  # fmt: skip
    ends = list(range(r + c, args.stream + 1, args.step))
    # Inputs are judged against the training dataset whichever traffic reference is chosen.
    verdicts: dict[tuple[str, str], Counter[str]] = {
        (kind, ref): Counter() for kind in KINDS for ref in references
    }
    t_all = time.perf_counter()
    for end in ends:
        current = stream.subset(np.arange(end - c, end)).sample()
        verdicts[("input", "spread")][inputs.test(current).verdict] += 1
        for ref, rows in references.items():
            reference = stream.subset(rows(end)).sample()
            for kind, make in (("latent", LatentDetector), ("decision", DecisionDetector)):
                try:
                    found = make(options).fit(reference).test(current).verdict
                except Skipped as skip:
                    found = f"skipped: {skip}"
                verdicts[(kind, ref)][found] += 1
    say(f"  stateful run judged at {len(ends)} positions ({time.perf_counter() - t_all:.0f}s)")
    print("On the stateful stream (one unshifted demo run, one calendar throughout)")
    print(f"{args.stream} requests; judged at {len(ends)} positions, every {args.step} requests "
          f"from {r + c}: the newest {c} requests against the reference")  # fmt: skip
    header = f"{'kind':<10}{'reference':<38}{'false positives':>17}{'warn':>8}"
    print("-" * len(header))
    print(header)
    print("-" * len(header))
    what = {
        "spread": f"{r} across the first {r * REFERENCE_SPREAD} (default)",
        "first": f"the version's first {r}",
        "preceding": f"the {r} just before",
    }
    for kind in KINDS:
        for ref in references if kind != "input" else ("spread",):
            counted = verdicts[(kind, ref)]
            label = "the training dataset" if kind == "input" else what[ref]
            print(f"{kind:<10}{label:<38}{counted['drift'] / len(ends):>17.1%}"
                  f"{counted['warn'] / len(ends):>8.1%}")  # fmt: skip
            for reason, n in counted.items():
                if reason.startswith("skipped"):
                    print(f"  {n} positions {reason}")
    print("-" * len(header))


if __name__ == "__main__":
    sys.exit(main())
