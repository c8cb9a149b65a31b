"""Experiment analysis quality: false verdicts under peeking, power, and the SRM check, on
simulated traffic whose truth is known.

Run from the repository root:

    .venv/bin/python bench/experiments_quality.py            # 200 experiments per scenario
    .venv/bin/python bench/experiments_quality.py --quick    # 50, for a smoke run

Every scenario simulates `--experiments` experiments (seeded numpy Generator). Each unit (a
request) is assigned to an arm at random at the delivered split and then succeeds (plan
success) or takes a latency at its arm's true distribution. The analysis is checked after
every batch of `--batch` units up to `--units` units, as someone reloading the experiment page
would: a verdict counts as soon as it appears at any look, which is what peeking does to a
fixed-horizon test. Per batch the arms' counts and sums are cumulated with numpy; each look
calls `app.experiments.analysis` (`compare`, `srm`) exactly as the results job does.

Scenarios (truth, and the target the rate is held to):
- A/A plan success: both arms succeed at 60%, 50/50. Share of experiments ever judged
  `better` or `worse`: <= 5% (alpha 0.05). Also the share ever flagged as SRM: <= 0.1%, and,
  for contrast, the share a fixed-horizon z-test read at the same looks would flag.
- A/B plan success: control 60%, treatment 55% (5 points worse), 50/50. Share judged `worse`
  for the treatment (its first decisive verdict) by `--units` units: >= 90%; a `better` would be
  a wrong sign.
- SRM: configured 50/50, delivered 52/48 (an assignment bug, or one arm losing 8% of its
  records). Share flagged `invalid: SRM`: >= 95%, checked up to `--srm-units` units.
- A/A latency: both arms log-normal, median 120 ms, sigma 0.5 (a long tail); share ever judged
  `better` or `worse` on mean latency: <= 5%.
- A/B latency: treatment 10% slower (every latency x 1.1); share judged `worse`: >= 90%.

It asserts nothing; it prints the rates beside their targets, each with the 95% interval of a
rate measured on that many experiments. 200 experiments are a noisy measure of a false-verdict
rate: over 5,000 A/A experiments (seeds 100-109, 500 each) the plan-success rate was 2.6%, and a
200-experiment draw lands above 5% about 2% of the time (seed 14 does: 12/200 = 6.0%).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import numpy as np
from scipy import stats

from app.experiments.analysis import (
    BETTER,
    INCONCLUSIVE,
    WORSE,
    ArmSummary,
    compare,
    srm,
    summarise_binary,
)

SUCCESS_RATE = 0.60
WORSE_SUCCESS_RATE = 0.55
DELIVERED_SHARE = 0.52
LATENCY_MEDIAN_MS = 120.0
LATENCY_SIGMA = 0.5
SLOWER = 1.10
WEIGHTS = {"control": 0.5, "treatment": 0.5}

# (rng, mask of the control's units) -> every unit's value, drawn from its arm's truth.
Draw = Callable[[np.random.Generator, np.ndarray], np.ndarray]


@dataclass
class Looks:
    """Cumulative per-arm figures of every experiment at every look: shape (experiments, looks)."""

    n: tuple[np.ndarray, np.ndarray]
    sums: tuple[np.ndarray, np.ndarray]
    squares: tuple[np.ndarray, np.ndarray]
    units: np.ndarray  # units seen at each look, shape (looks,)


def simulate(
    rng: np.random.Generator,
    experiments: int,
    units: int,
    batch: int,
    share: float,
    draw: Draw,
) -> Looks:
    """A unit goes to the control with probability `share`; `draw(rng, control)` gives every
    unit's value from its arm's distribution (`control` is the mask of control units)."""
    looks = units // batch
    control = rng.random((experiments, looks * batch)) < share
    values = draw(rng, control)

    def cumulate(x: np.ndarray) -> np.ndarray:
        per_batch: np.ndarray = x.reshape(experiments, looks, batch).sum(axis=2)
        return per_batch.cumsum(axis=1)

    def per_arm(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        in_control = cumulate(np.where(control, x, 0))
        return in_control, cumulate(x) - in_control

    return Looks(
        n=per_arm(np.ones_like(values, dtype=np.int64)),
        sums=per_arm(values),
        squares=per_arm(values * values),
        units=np.arange(1, looks + 1) * batch,
    )


def binary_arm(looks: Looks, arm: int, e: int, t: int) -> ArmSummary:
    return summarise_binary(round(looks.sums[arm][e, t]), int(looks.n[arm][e, t]))


def continuous_arm(looks: Looks, arm: int, e: int, t: int) -> ArmSummary:
    n = int(looks.n[arm][e, t])
    if n == 0:
        return ArmSummary(0, 0.0, 0.0)
    total, squares = float(looks.sums[arm][e, t]), float(looks.squares[arm][e, t])
    mean = total / n
    variance = max(squares - n * mean * mean, 0.0) / (n - 1) if n > 1 else 0.0
    return ArmSummary(n, mean, variance)


@dataclass
class Outcome:
    verdicts: dict[str, int]  # first decisive verdict per experiment (or inconclusive)
    units_to_verdict: list[int]


def first_verdicts(
    looks: Looks, arm_summary: Callable[[Looks, int, int, int], ArmSummary], higher: bool
) -> Outcome:
    experiments, count = looks.n[0].shape
    verdicts = {BETTER: 0, WORSE: 0, INCONCLUSIVE: 0}
    when: list[int] = []
    for e in range(experiments):
        verdict = INCONCLUSIVE
        for t in range(count):
            found = compare(
                arm_summary(looks, 0, e, t), arm_summary(looks, 1, e, t), higher_is_better=higher
            ).verdict
            if found != INCONCLUSIVE:
                verdict = found
                when.append(int(looks.units[t]))
                break
        verdicts[verdict] += 1
    return Outcome(verdicts, when)


def fixed_horizon_flagged(looks: Looks) -> int:
    """Experiments in which a fixed-horizon two-sided z-test at 5%, read at every look as if
    each were the planned one, ever rejects: what peeking does without a sequential test."""
    n0, n1 = (np.maximum(n, 2) for n in looks.n)
    p0, p1 = looks.sums[0] / n0, looks.sums[1] / n1
    se = np.sqrt(p0 * (1 - p0) / (n0 - 1) + p1 * (1 - p1) / (n1 - 1))
    z = np.divide(p1 - p0, se, out=np.zeros_like(se), where=se > 0)
    return int(np.any(np.abs(z) > 1.959964, axis=1).sum())


def srm_flagged(looks: Looks) -> Outcome:
    experiments, count = looks.n[0].shape
    flagged = 0
    when: list[int] = []
    for e in range(experiments):
        for t in range(count):
            counts = {"control": int(looks.n[0][e, t]), "treatment": int(looks.n[1][e, t])}
            if srm(counts, WEIGHTS).mismatch:
                flagged += 1
                when.append(int(looks.units[t]))
                break
    return Outcome({"flagged": flagged, "clean": experiments - flagged}, when)


def bernoulli(control_rate: float, treatment_rate: float) -> Draw:
    def draw(rng: np.random.Generator, control: np.ndarray) -> np.ndarray:
        rate = np.where(control, control_rate, treatment_rate)
        return (rng.random(control.shape) < rate).astype(float)

    return draw


def lognormal(treatment_factor: float) -> Draw:
    def draw(rng: np.random.Generator, control: np.ndarray) -> np.ndarray:
        values = rng.lognormal(np.log(LATENCY_MEDIAN_MS), LATENCY_SIGMA, control.shape)
        return values * np.where(control, 1.0, treatment_factor)

    return draw


def rate_line(label: str, hits: int, total: int, target: str, ok: bool, note: str = "") -> str:
    # The exact (Clopper-Pearson) 95% interval of the rate: 200 experiments measure a 2.5% rate
    # to +-2 points, so a reader sees how much of a miss or a pass is the draw.
    low = stats.beta.ppf(0.025, hits, total - hits + 1) if hits else 0.0
    high = stats.beta.ppf(0.975, hits + 1, total - hits) if hits < total else 1.0
    mark = "ok" if ok else "MISSED"
    share = f"{hits}/{total} = {hits / total:6.1%} [{low:5.1%}, {high:5.1%}]"
    return f"  {label:<38} {share:>32}   target {target:<8} {mark}{note}"


def median_note(when: list[int]) -> str:
    return f"   (median {int(np.median(when)):,} units to the verdict)" if when else ""


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Experiment analysis quality on simulated traffic with known truth, checked "
        "after every batch (peeking): false verdicts on A/A, power on A/B, SRM detection. "
        "Prints rates beside their targets; asserts nothing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--experiments", type=int, default=200, help="experiments per scenario")
    parser.add_argument("--units", type=int, default=10_000, help="units per experiment (A/A, A/B)")
    parser.add_argument("--srm-units", type=int, default=30_000, help="units per SRM experiment")
    parser.add_argument("--batch", type=int, default=100, help="units between two looks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the numpy Generator")
    parser.add_argument("--quick", action="store_true", help="50 experiments per scenario")
    args = parser.parse_args()
    if args.quick:
        args.experiments = 50
    if args.batch <= 0 or args.units < args.batch or args.srm_units < args.batch:
        parser.error("--units and --srm-units must hold at least one --batch (> 0)")
    rng = np.random.default_rng(args.seed)
    runs, batch = args.experiments, args.batch
    print(
        f"{runs} experiments per scenario, a look every {batch} units, seed {args.seed}; "
        f"alpha 0.05 (comparisons), 0.001 (SRM); [95% interval of each rate]"
    )
    started = time.perf_counter()
    ok = True

    def line(label: str, hits: int, target: float, at_most: bool, note: str = "") -> None:
        nonlocal ok
        good = hits / runs <= target if at_most else hits / runs >= target
        ok = ok and good
        sign = "<=" if at_most else ">="
        print(rate_line(label, hits, runs, f"{sign} {target:.1%}", good, note))

    plan = bernoulli(SUCCESS_RATE, SUCCESS_RATE)
    aa = simulate(rng, runs, args.units, batch, 0.5, plan)
    aa_verdicts = first_verdicts(aa, binary_arm, higher=True)
    aa_srm = srm_flagged(aa)
    print(f"\nA/A plan success ({SUCCESS_RATE:.0%} both arms, 50/50, up to {args.units:,} units):")
    wrong = aa_verdicts.verdicts[BETTER] + aa_verdicts.verdicts[WORSE]
    line("false better/worse at any look", wrong, 0.05, at_most=True)
    line("false SRM at any look", aa_srm.verdicts["flagged"], 0.001, at_most=True)
    naive = fixed_horizon_flagged(aa)
    print(
        f"  {'(a fixed-horizon z-test, same looks:':<38} {naive}/{runs} = {naive / runs:.1%}: "
        "what peeking does without a sequential test)"
    )

    ab = simulate(rng, runs, args.units, batch, 0.5, bernoulli(SUCCESS_RATE, WORSE_SUCCESS_RATE))
    ab_verdicts = first_verdicts(ab, binary_arm, higher=True)
    print(
        f"\nA/B plan success (control {SUCCESS_RATE:.0%}, treatment {WORSE_SUCCESS_RATE:.0%}, "
        f"50/50, up to {args.units:,} units):"
    )
    line("treatment found worse", ab_verdicts.verdicts[WORSE], 0.90, at_most=False,
         note=median_note(ab_verdicts.units_to_verdict))  # fmt: skip
    line("treatment found better (wrong sign)", ab_verdicts.verdicts[BETTER], 0.05, at_most=True)

    biased = simulate(rng, runs, args.srm_units, batch, DELIVERED_SHARE, plan)
    biased_srm = srm_flagged(biased)
    print(
        f"\nSRM (configured 50/50, delivered {DELIVERED_SHARE:.0%}/{1 - DELIVERED_SHARE:.0%}, "
        f"up to {args.srm_units:,} units):"
    )
    line("flagged invalid: SRM", biased_srm.verdicts["flagged"], 0.95, at_most=False,
         note=median_note(biased_srm.units_to_verdict))  # fmt: skip

    latency = simulate(rng, runs, args.units, batch, 0.5, lognormal(1.0))
    latency_verdicts = first_verdicts(latency, continuous_arm, higher=False)
    print(
        f"\nA/A latency (log-normal, median {LATENCY_MEDIAN_MS:.0f} ms, sigma {LATENCY_SIGMA}, "
        f"up to {args.units:,} units):"
    )
    wrong = latency_verdicts.verdicts[BETTER] + latency_verdicts.verdicts[WORSE]
    line("false better/worse at any look", wrong, 0.05, at_most=True)

    slower = simulate(rng, runs, args.units, batch, 0.5, lognormal(SLOWER))
    slower_verdicts = first_verdicts(slower, continuous_arm, higher=False)
    print(f"\nA/B latency (treatment x{SLOWER} slower, up to {args.units:,} units):")
    line("treatment found worse", slower_verdicts.verdicts[WORSE], 0.90, at_most=False,
         note=median_note(slower_verdicts.units_to_verdict))  # fmt: skip

    print(f"\n{'all targets met' if ok else 'SOME TARGETS MISSED'} "
          f"({time.perf_counter() - started:.1f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
