"""PLACEHOLDER of the statistics module (EXPERIMENTS.md, "analysis.py"), only so that this
branch's KPIs and results run: the real module replaces this file at merge.

Same names and signatures as the shared design: `ArmSummary`, `summarise`,
`summarise_binary`, `compare` -> `Comparison`, `srm` -> `SampleRatio`, `INVALID_SRM`.
`compare` is a normal-mixture confidence sequence on the difference of means; `srm` is a
plain chi-square test.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scipy import stats

INVALID_SRM = "invalid: SRM"


@dataclass(frozen=True)
class ArmSummary:
    n: int
    mean: float
    variance: float


@dataclass(frozen=True)
class Comparison:
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str


@dataclass(frozen=True)
class SampleRatio:
    p_value: float
    mismatch: bool
    expected: dict[str, float]


def summarise(values: Iterable[float]) -> ArmSummary:
    data = [float(v) for v in values]
    n = len(data)
    if n == 0:
        return ArmSummary(0, 0.0, 0.0)
    mean = sum(data) / n
    variance = sum((v - mean) ** 2 for v in data) / (n - 1) if n > 1 else 0.0
    return ArmSummary(n, mean, variance)


def summarise_binary(successes: int, n: int) -> ArmSummary:
    if n == 0:
        return ArmSummary(0, 0.0, 0.0)
    p = successes / n
    return ArmSummary(n, p, p * (1 - p) * n / (n - 1) if n > 1 else 0.0)


def compare(
    control: ArmSummary,
    treatment: ArmSummary,
    *,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    tau: float | None = None,
) -> Comparison:
    difference = treatment.mean - control.mean
    if control.n < 2 or treatment.n < 2:
        return Comparison(difference, -math.inf, math.inf, 1.0, "inconclusive")
    v = control.variance / control.n + treatment.variance / treatment.n
    v = max(v, 1e-12)
    t2 = (tau if tau is not None else 0.1 * max(abs(control.mean), 1e-3)) ** 2
    half = math.sqrt(v * (v + t2) / t2 * (math.log((v + t2) / v) + 2 * math.log(1 / alpha)))
    log_lr = 0.5 * math.log(v / (v + t2)) + t2 * difference**2 / (2 * v * (v + t2))
    p_value = min(1.0, math.exp(-log_lr)) if log_lr < 700 else 0.0
    low, high = difference - half, difference + half
    verdict = "inconclusive"
    if low > 0 or high < 0:
        verdict = "better" if (low > 0) == higher_is_better else "worse"
    return Comparison(difference, low, high, p_value, verdict)


def srm(
    counts: Mapping[str, int], weights: Mapping[str, float], *, alpha: float = 0.001
) -> SampleRatio:
    total = sum(counts.get(arm, 0) for arm in weights)
    weight_sum = sum(weights.values()) or 1.0
    expected = {arm: total * w / weight_sum for arm, w in weights.items()}
    if total == 0 or len(weights) < 2:
        return SampleRatio(1.0, False, expected)
    observed = [counts.get(arm, 0) for arm in weights]
    p_value = float(stats.chisquare(observed, [expected[a] for a in weights]).pvalue)
    return SampleRatio(p_value, p_value < alpha, expected)
