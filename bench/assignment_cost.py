"""What assigning a request to the running experiments costs when the request opens.

The SDK (and the gateway) assign every request, in-process, when its scope opens: for each
running experiment one hash of (salt, unit) picks the arm and one more per shadow arm decides
whether it is sampled, and the root span gets the experiment's and arm's names
(`collectors._experiments.Experiments.assign`, the call `collectors.request` makes). This
times that call alone, one call at a time, over `units` distinct subjects (each its own unit,
so no cache helps), for one running experiment with two arms and a shadow arm sampled at
100% — against no running experiment, where the call returns at once. Each figure includes
one `time.perf_counter_ns()` pair (about 0.1 µs), printed beside it.

    .venv/bin/python bench/assignment_cost.py --units 100000

`bench/sdk_overhead.py` runs it too and prints it with its other figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from collectors._experiments import Experiments, parse

TARGET_P99_US = 20.0
EXPERIMENT = {
    "name": "wm-v2",
    "stage": "world_model",
    "unit": "subject",
    "salt": "3f1c9a0e5b7d4c2a8e6f1b3d5a7c9e0f",
    "arms": [
        {"name": "control", "model": "models:/booking-world-model/1", "weight": 1.0},
        {"name": "v2", "model": "models:/booking-world-model/2", "weight": 1.0},
    ],
    "shadows": [{"name": "v3", "model": "models:/booking-world-model/3", "sample_rate": 1.0}],
}


def _percentiles(samples_ns: list[int]) -> dict[int, float]:
    ordered = sorted(samples_ns)
    last = len(ordered) - 1
    return {q: ordered[min(last, round(q / 100 * last))] / 1000 for q in (50, 95, 99)}


def _timed(experiments: Experiments, units: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    for i in range(units):
        subject, request_id = f"user-{i}", f"{i:032x}"
        attributes: dict[str, Any] = {}
        start = clock()
        experiments.assign(subject, request_id, attributes)
        samples.append(clock() - start)
    return samples


def measure(units: int = 100_000, warmup: int = 2_000) -> dict[str, Any]:
    """Per-call latency (µs) of the assignment at request open: p50/p95/p99 with one running
    experiment (two arms, one shadow arm at 100%) and with none; the timer's own cost."""
    running = Experiments(parse([EXPERIMENT]))
    idle = Experiments()
    for experiments in (running, idle):
        _timed(experiments, warmup)
    clock = time.perf_counter_ns
    timer = [-(clock() - clock()) for _ in range(10_000)]
    return {
        "units": units,
        "one_experiment_with_shadow_us": _percentiles(_timed(running, units)),
        "no_experiment_us": _percentiles(_timed(idle, units)),
        "timer_us": _percentiles([abs(t) for t in timer]),
        "target_p99_us": TARGET_P99_US,
    }


def report(found: dict[str, Any]) -> list[str]:
    """The figures as printed lines, the target beside the p99."""
    with_one = found["one_experiment_with_shadow_us"]
    met = "met" if with_one[99] < found["target_p99_us"] else "NOT met"
    lines = [
        f"assignment at request open ({found['units']:,} units, one call each; µs, timer "
        f"pair included: p50 {found['timer_us'][50]:.2f})",
        f"{'experiments running':<44}{'p50 µs':>9}{'p95 µs':>9}{'p99 µs':>9}",
    ]
    for label, key in (("none", "no_experiment_us"),
                       ("one: 2 arms + 1 shadow arm at 100%", "one_experiment_with_shadow_us")):
        p = found[key]
        lines.append(f"{label:<44}{p[50]:>9.2f}{p[95]:>9.2f}{p[99]:>9.2f}")
    lines.append(f"  target: p99 < {found['target_p99_us']:.0f} µs with one experiment: "
                 f"{with_one[99]:.2f} µs, {met}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000, help="units (requests) timed")
    args = parser.parse_args()
    print("\n".join(report(measure(args.units))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
