"""Drift speed benchmark: one full drift job over 100,000 requests, beside Evidently alone.

Run from the repository root:

    .venv/bin/python bench/drift_speed.py                 # 100,000 current + 100,000 reference
    .venv/bin/python bench/drift_speed.py --requests 10000

What it measures, in one run:

1. A fresh SQLite store (the service's schema) filled directly with 2 x `--requests` requests
   of one world-model version: 20 input features each (14 numerical, 6 categorical), the
   latent state of 2 layers as 16-dimensional projections, and a planner decision over 16
   candidates. The first half is the version's traffic reference, the second half drifts a
   little (a few features, one layer, the decisions) so every part of the job has work.
2. One full drift job (`DriftRunner.run`, as `warden drift run` runs it), the runner's first,
   so nothing is cached: reading both windows from the store, Evidently's data-drift tests
   on the inputs and its HTML report (rendered from a 5,000-row sample per side), the latent
   RFF-MMD test per layer with 100 permutations, the decision tests, logging the run with
   its artifacts to a local MLflow store, storing the reports, the ledger event. Wall time,
   and the job's own time per phase. Then the same job again, as the scheduler runs it next:
   the runner keeps the pinned reference window and its latent references, so only the
   current window is read.
3. In the same run, Evidently's `DataDriftPreset` alone on the same input columns
   (`Report.run` on the same frames, then rendering its HTML).
4. The latent test's scaling with the window: 1k to 100k rows against as many.

Targets: the full job under 15 s on a 2-core machine; latent-state and decision drift together
at most 50% of Evidently's own time. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import numpy as np

NUMERICAL = [f"num_{i:02d}" for i in range(14)]
CATEGORICAL = [f"cat_{i}" for i in range(6)]
LAYERS = ("encoder", "dynamics")
ACTIONS = [f"room-{i:02d}" for i in range(1, 13)]
T0 = 1_800_000_000_000_000_000  # nanoseconds: a fixed start for the generated traffic


def fill(db_url: str, n: int, seed: int) -> None:
    """2n requests of `world-model` v1 in project `bench`: n reference, then n drifted."""
    from sqlalchemy import insert

    from app.config import Settings
    from app.ingest.decision_summary import summarise
    from app.store import schema
    from app.store.engine import create_db_engine, write_transaction
    from app.store.tables import PlannerDecision, Request, RequestModel, WorldModelState
    from app.tenancy import projects

    engine = create_db_engine(Settings(database_url=db_url))
    schema.upgrade(engine)
    project_id = projects.create_project(engine, "bench")
    rng = np.random.default_rng(seed)
    block = 20_000
    for half in (0, 1):
        drift = float(half)
        for start in range(0, n, block):
            m = min(block, n - start)
            base = half * n + start
            num = rng.normal(size=(m, len(NUMERICAL)))
            num[:, :3] += 0.15 * drift  # a small shift of 3 numerical features
            cats = rng.integers(0, 4, size=(m, len(CATEGORICAL)))
            latent = rng.normal(size=(len(LAYERS), m, 16)).astype(np.float32)
            latent[1, :, :2] += 0.2 * drift  # the second layer moves in 2 dimensions
            scores = rng.beta(2 + drift, 2, size=(m, 16))
            requests, models, states, decisions = [], [], [], []
            for i in range(m):
                k = base + i
                trace = f"{k:032x}"
                t = T0 + k * 1_000_000
                features = {c: round(float(v), 6) for c, v in zip(NUMERICAL, num[i], strict=True)}
                features |= {c: f"v{v}" for c, v in zip(CATEGORICAL, cats[i], strict=True)}
                requests.append({
                    "project_id": project_id, "trace_id": trace, "root_span_id": f"{k:016x}",
                    "name": "request", "service_name": "bench", "start_time_unix_nano": t,
                    "end_time_unix_nano": t + 500_000, "duration_ms": 0.5, "status": "ok",
                    "outcome": "booked", "models": {"world_model": {"name": "world-model",
                                                                    "version": "1"}},
                    "features": features,
                })  # fmt: skip
                models.append({
                    "project_id": project_id, "trace_id": trace, "role": "world_model",
                    "model_name": "world-model", "model_version": "1", "start_time_unix_nano": t,
                })  # fmt: skip
                for j, layer in enumerate(LAYERS):
                    states.append({
                        "project_id": project_id, "trace_id": trace, "span_id": f"{k:016x}",
                        "seq": j, "step": 0, "layer": layer,
                        "projection": latent[j, i].tolist(), "time_unix_nano": t,
                    })  # fmt: skip
                order = np.argsort(-scores[i])
                candidates = [
                    {"action": f"{ACTIONS[(k + int(c)) % len(ACTIONS)]}@slot-{int(c)}",
                     "score": round(float(scores[i, c]), 4), "feasible": bool(scores[i, c] > 0.1)}
                    for c in order
                ]  # fmt: skip
                decisions.append({
                    "project_id": project_id, "trace_id": trace, "span_id": f"{k:016x}",
                    "chosen": candidates[0]["action"], "confidence": candidates[0]["score"],
                    "candidates": candidates, "constraints": ["capacity"], "time_unix_nano": t,
                    # what ingest computes for each decision (app/ingest/normalise.py)
                    **summarise(candidates, candidates[0]["action"]),
                })  # fmt: skip
            with write_transaction(engine) as conn:
                conn.execute(insert(Request), requests)
                conn.execute(insert(RequestModel), models)
                conn.execute(insert(WorldModelState), states)
                conn.execute(insert(PlannerDecision), decisions)
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Drift speed: one full drift job over N requests against N reference "
        "requests, and Evidently's data-drift preset alone on the same columns, in one run. "
        "Prints figures; asserts nothing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=100_000, help="requests per window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    if args.requests < 1000:
        parser.error("--requests must be at least 1000")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="warden-drift-speed-"))
    db_url = f"sqlite:///{tmp / 'warden.db'}"
    tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    n = args.requests
    say(f"filling a store with 2 x {n:,} requests ...")
    t0 = time.perf_counter()
    fill(db_url, n, args.seed)
    say(f"  done in {time.perf_counter() - t0:.0f}s")

    import pandas as pd
    import torch

    from app.config import Settings
    from app.drift import plan as plans
    from app.drift import settings as drift_settings
    from app.drift import windows
    from app.drift.detectors.latent import LatentReference, latent_drift
    from app.drift.job import DriftRunner
    from app.registry.mlflow_results import Result, log_result
    from app.store.engine import create_db_engine
    from app.tenancy import projects

    engine = create_db_engine(Settings(database_url=db_url))
    project_id = projects.project_id(engine, "bench")
    config = drift_settings.update_settings(
        engine, project_id, {"reference_count": n, "current_count": n, "interval_seconds": 0}
    )
    # Import MLflow and Evidently and create the experiment first: a long-running service
    # has done all of that before its first scheduled job.
    log_result(tracking_uri, Result(kind="warm-up", project="bench"))
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    runner = DriftRunner(engine, tracking_uri, tmp / "data", policies=None)
    now = T0 + 2 * n * 1_000_000 + 1
    say("one full drift job (DriftRunner.run) ...")
    t0 = time.perf_counter()
    result = runner.run("bench", "world-model", "1", now=now)
    job_seconds = time.perf_counter() - t0
    (version,) = result.versions
    verdicts = {r.kind: r.verdict for r in version.reports}
    say(f"  {job_seconds:.1f}s: {verdicts}, skipped {version.skipped}")
    say("the next job, the reference window kept by the runner ...")
    t0 = time.perf_counter()
    again = runner.run("bench", "world-model", "1", now=now)
    next_seconds = time.perf_counter() - t0
    next_phases = again.versions[0].seconds

    phases = version.seconds
    load_s, inputs_s = phases.get("load", 0.0), phases.get("input", 0.0)
    latent_s, decision_s = phases.get("latent", 0.0), phases.get("decision", 0.0)
    rest_s = job_seconds - load_s - inputs_s - latent_s - decision_s
    planned = plans.plan(engine, project_id, "world-model", "1", config, now)
    ref_bounds, cur_bounds = planned.reference, planned.current
    assert ref_bounds is not None and cur_bounds is not None
    ref = windows.load(engine, project_id, "world-model", "1", ref_bounds)
    cur = windows.load(engine, project_id, "world-model", "1", cur_bounds)

    say("Evidently's DataDriftPreset alone on the same columns ...")
    definition = DataDefinition(numerical_columns=NUMERICAL, categorical_columns=CATEGORICAL)
    ref_frame = pd.DataFrame(ref.features)
    cur_frame = pd.DataFrame(cur.features)
    t0 = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(cur_frame, data_definition=definition),
        Dataset.from_pandas(ref_frame, data_definition=definition),
    )
    evidently_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    snapshot.get_html_str(as_iframe=False)
    evidently_html_s = time.perf_counter() - t0

    say("latent test scaling ...")
    scaling = []
    rng = np.random.default_rng(1)
    for size in (1_000, 2_000, 5_000, 10_000, 50_000, 100_000):
        a = rng.normal(size=(size, 16)).astype(np.float32)
        b = rng.normal(size=(size, 16)).astype(np.float32)
        t0 = time.perf_counter()
        latent_drift(LatentReference.build(a), b, permutations=100)
        scaling.append((size, time.perf_counter() - t0))

    extra = latent_s + decision_s
    rows = [
        ("requests per window (current, reference)", f"{cur.requests:,}, {ref.requests:,}"),
        (
            "input features / layers x dims / candidates",
            f"{len(NUMERICAL) + len(CATEGORICAL)} / {len(LAYERS)} x 16 / 16",
        ),
        ("FULL DRIFT JOB (wall time)", f"{job_seconds:.2f} s"),
        ("  read both windows from the store", f"{load_s:.2f} s"),
        ("  inputs (Evidently tests; HTML from a sample)", f"{inputs_s:.2f} s"),
        ("  latent states (RFF MMD, 2 layers, 100 perm.)", f"{latent_s:.2f} s"),
        ("  decisions", f"{decision_s:.2f} s"),
        ("  the rest: MLflow run + artifacts, store, ledger", f"{rest_s:.2f} s"),
        ("NEXT JOB, reference window kept (wall time)", f"{next_seconds:.2f} s"),
        ("  read the current window", f"{next_phases.get('load', 0.0):.2f} s"),
        ("Evidently DataDriftPreset alone (Report.run)", f"{evidently_s:.2f} s"),
        ("  and rendering its HTML", f"{evidently_html_s:.2f} s"),
        ("latent + decisions / Evidently alone", f"{extra / evidently_s:.0%}"),
    ]
    width = max(len(label) for label, _ in rows)
    print()
    print("Warden drift speed benchmark (SQLite store, local MLflow store)")
    print("-" * (width + 18))
    for label, value in rows:
        print(f"{label:<{width}}  {value:>16}")
    print("-" * (width + 18))
    print("latent test (RFF MMD, 256 features, 100 permutations), n vs n rows, 16 dimensions:")
    print("  " + ", ".join(f"{s // 1000}k: {t:.2f}s" for s, t in scaling))
    fast = "met" if job_seconds < 15 else "NOT met"
    cheap = "met" if extra <= 0.5 * evidently_s else "NOT met"
    print(f"targets: full job < 15 s: {fast}; latent + decisions <= 50% of Evidently: {cheap}")
    print(f"verdicts of the job: {verdicts}")
    print(
        f"machine: nproc={os.cpu_count()}, torch threads {torch.get_num_threads()}, "
        f"python {platform.python_version()}, {platform.platform(terse=True)}"
    )
    if args.json:
        print(json.dumps({
            "job_seconds": job_seconds, "next_job_seconds": next_seconds,
            "load_seconds": load_s, "inputs_seconds": inputs_s,
            "latent_seconds": latent_s, "decision_seconds": decision_s,
            "evidently_seconds": evidently_s, "evidently_html_seconds": evidently_html_s,
            "latent_scaling": scaling, "verdicts": verdicts,
        }))  # fmt: skip
    engine.dispose()
    if args.keep:
        say(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
