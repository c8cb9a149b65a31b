"""The statistics of experiments: is a treatment arm better or worse than the control on a KPI,
with an interval, and was the traffic split as configured? Pure (numpy and scipy, no database),
so the results job, the bench and the tests run the same code.

Results are read whenever someone looks, every hour or on every page load, so every test here
is *always valid*: its error rate holds however often, and whenever, it is looked at, and a
verdict may be acted upon as soon as it appears. A fixed-horizon t-test read that way flags far
more than its 5% on identical arms; `bench/experiments_quality.py` measures ours under peeking.

- `compare`: the mixture sequential probability ratio test (mSPRT) with a normal mixture on
  the difference of means, and the confidence sequence it inverts to. Johari, Pekelis, Walsh,
  "Always valid inference: continuous monitoring of A/B tests", Operations Research 70(3),
  2022 (arXiv:1512.04922); the boundary in the form of Howard, Ramdas, McAuliffe, Sekhon,
  "Time-uniform, nonparametric, nonasymptotic confidence sequences", Annals of Statistics
  49(2), 2021, eq. (14): Optimizely's Stats Engine is this mSPRT, GrowthBook's sequential
  intervals are this boundary.
- `srm`: the sample-ratio-mismatch check, a Dirichlet-multinomial mixture Bayes factor on the
  assignment counts against the configured weights, whose inverse is an anytime-valid
  p-value. Lindon, Malek, "Anytime-valid inference for multinomial count data", NeurIPS 2022
  (Optimizely's `ssrm`).
- `verdict_for` / `arm_verdict`: a mismatched split invalidates every comparison of the
  experiment (`invalid: SRM`), since its arms no longer hold comparable traffic.

Both treat units (requests or subjects, as the experiment's assignment unit says) as
independent; `compare` also rests on the normal approximation of a mean, fine from tens of units
per arm, where its boundary is still several standard errors wide.

The p-values are those of the current look: 1 / (the test's likelihood ratio or Bayes factor
now). Johari et al.'s always-valid p-value is their running minimum over the looks; a caller
that keeps the history may take it: it first falls below alpha at the same look as this one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import gammaln, xlogy

BETTER = "better"
WORSE = "worse"
INCONCLUSIVE = "inconclusive"
INVALID_SRM = "invalid: SRM"
VERDICTS = (BETTER, WORSE, INCONCLUSIVE, INVALID_SRM)

# Fewer units per arm than this and there is no variance to speak of: `inconclusive`.
MIN_UNITS = 2
# The default mixture scale makes the confidence sequence tightest after this many units per
# arm (see `mixture_scale`). The boundary is flat around its optimum: at 1,000 it is within
# ~6% of the best possible width from 300 to 5,000 units per arm and within ~10% up to 20,000,
# which covers a small team's week of decisions as well as a busy service's day.
PLANNED_UNITS_PER_ARM = 1_000
# The Dirichlet prior's concentration for `srm`. Its mixture is, like the mSPRT's, tightest at
# a size: about 16.5 x c units at alpha 0.001 (the normal approximation of Howard et al.), so
# 100 puts it near 1,650 units, the same planned size as above (two arms of ~1,000). A 60/40
# split is then flagged within 500 units and a 52/48 one within ~20,000; the width grows only
# with the log of the units past that. ssrm's default of 10,000 is tuned for sites with
# millions of visitors: it misses even a 55/45 split of 2,000 units.
SRM_CONCENTRATION = 100.0


@dataclass(frozen=True, slots=True)
class ArmSummary:
    """What the tests need of an arm on one KPI: its units, their mean and the unbiased sample
    variance (ddof=1) of one unit's value."""

    n: int
    mean: float
    variance: float


@dataclass(frozen=True, slots=True)
class Comparison:
    """A treatment against the control on one KPI. `difference` is treatment minus control;
    `[ci_low, ci_high]` is the confidence sequence at that moment (infinite when there is
    nothing to go on); `p_value` is this look's (see the module); `verdict` is from the
    treatment's side."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str

    def as_dict(self) -> dict[str, float | str | None]:
        """JSON-safe: an unbounded side of the interval (or a difference of means that do not
        exist) becomes None."""
        numbers = {
            "difference": self.difference,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
        }
        safe: dict[str, float | str | None] = {
            k: v if math.isfinite(v) else None for k, v in numbers.items()
        }
        return {**safe, "verdict": self.verdict}


@dataclass(frozen=True, slots=True)
class SampleRatio:
    """The split check: an anytime-valid `p_value`, whether it is below the check's alpha
    (`mismatch`), and the count each arm should have at the configured weights."""

    p_value: float
    mismatch: bool
    expected: dict[str, float]


def summarise(values: ArrayLike) -> ArmSummary:
    """An arm's summary from one value per unit; non-finite values (a missing measure) are
    left out.

    >>> summarise([1.0, 2.0, 3.0])
    ArmSummary(n=3, mean=2.0, variance=1.0)
    """
    data = np.asarray(values, dtype=float).ravel()
    data = data[np.isfinite(data)]
    if data.size == 0:
        return ArmSummary(0, 0.0, 0.0)
    variance = float(data.var(ddof=1)) if data.size > 1 else 0.0
    return ArmSummary(int(data.size), float(data.mean()), variance)


def summarise_binary(successes: int, n: int) -> ArmSummary:
    """An arm's summary from a count of successes among `n` units: the same numbers
    `summarise` gives on the 0/1 values, without them.

    >>> summarise_binary(3, 4)
    ArmSummary(n=4, mean=0.75, variance=0.25)
    """
    if n <= 0:
        return ArmSummary(0, 0.0, 0.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n ({n}), not {successes}")
    p = successes / n
    variance = p * (1.0 - p) * n / (n - 1) if n > 1 else 0.0
    return ArmSummary(n, p, variance)


def mixture_scale(
    control: ArmSummary,
    treatment: ArmSummary,
    *,
    alpha: float = 0.05,
    planned_units_per_arm: int = PLANNED_UNITS_PER_ARM,
) -> float:
    """The default tau: the standard deviation of the normal mixture over the true difference.

    Howard et al. (2021, eq. 14): with the mixture variance tau^2 = r * V*, where V* is the
    variance of the difference at a planned size and r = -2 ln(alpha) + ln(1 - 2 ln(alpha))
    (7.9 at alpha 0.05), the confidence sequence is tightest at that size. V* comes from the
    arms' per-unit variances at `planned_units_per_arm` units each; it depends on no count, so
    the mixture stays fixed as units arrive, as the test's validity needs (only the plug-in
    variances move, as in GrowthBook). Read as an effect of interest: at the default, tau is
    ~0.09 standard deviations of a unit's difference, ~6 points on a 60% success rate.

    >>> round(mixture_scale(summarise_binary(600, 1000), summarise_binary(550, 1000)), 3)
    0.062
    """
    log_inverse = -2.0 * math.log(alpha)
    ratio = log_inverse + math.log1p(log_inverse)
    return math.sqrt(ratio * (control.variance + treatment.variance) / planned_units_per_arm)


def compare(
    control: ArmSummary,
    treatment: ArmSummary,
    *,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    tau: float | None = None,
) -> Comparison:
    """The treatment against the control on one KPI, valid at any number of looks.

    With V the variance of the difference of means and d its estimate, the mSPRT's likelihood
    ratio of "difference ~ N(0, tau^2)" against "difference = 0" is
    sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2))); the p-value is its inverse
    (at most 1), and the interval holds every difference the same test at level alpha would
    not reject: d +- sqrt(V (V + tau^2) / tau^2 * (2 ln(1/alpha) + ln((V + tau^2) / V))). The
    verdict is `better` or `worse` once the interval excludes 0, as the KPI's direction says;
    too few units (under 2 in an arm), no variance, or an arm missing (n = 0) leave it
    `inconclusive`. `tau` defaults to `mixture_scale`.

    >>> compare(summarise_binary(600, 1000), summarise_binary(450, 1000)).verdict
    'worse'
    >>> compare(summarise_binary(600, 1000), summarise_binary(590, 1000)).verdict
    'inconclusive'
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    if tau is not None and not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive number, not {tau}")
    difference = treatment.mean - control.mean
    if min(control.n, treatment.n) < MIN_UNITS:
        return _unknown(difference)
    v = control.variance / control.n + treatment.variance / treatment.n
    scale = mixture_scale(control, treatment, alpha=alpha) if tau is None else tau
    if not (math.isfinite(v) and v > 0 and scale > 0 and math.isfinite(difference)):
        return _unknown(difference)
    t2 = scale * scale
    log_ratio = 0.5 * math.log(v / (v + t2)) + t2 * difference**2 / (2.0 * v * (v + t2))
    p_value = math.exp(-log_ratio) if log_ratio > 0 else 1.0
    half = math.sqrt(v * (v + t2) / t2 * (2.0 * math.log(1.0 / alpha) + math.log1p(t2 / v)))
    low, high = difference - half, difference + half
    verdict = INCONCLUSIVE
    if low > 0 or high < 0:
        verdict = BETTER if (difference > 0) == higher_is_better else WORSE
    return Comparison(difference, low, high, p_value, verdict)


def srm(
    counts: Mapping[str, int], weights: Mapping[str, float], *, alpha: float = 0.001
) -> SampleRatio:
    """Were units assigned to the arms at the configured weights? Sequentially valid.

    The Bayes factor of "shares ~ Dirichlet(c * weights)" (c = `SRM_CONCENTRATION`) against
    "shares = weights" on the assignment counts; it is a nonnegative martingale under the
    configured split, so its inverse is a p-value that may be read after every unit (Lindon
    and Malek, 2022). The default alpha of 0.001 is the usual one for SRM checks: a false alarm
    discards an experiment. An arm with a count but no weight (or weight 0) is a mismatch
    outright; arms missing from `counts` have no units.

    >>> srm({"a": 5000, "b": 5000}, {"a": 0.5, "b": 0.5}).mismatch
    False
    >>> srm({"a": 5400, "b": 4600}, {"a": 0.5, "b": 0.5}).mismatch
    True
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    if any(not (math.isfinite(w) and w >= 0) for w in weights.values()):
        raise ValueError(f"weights must be nonnegative numbers, not {dict(weights)}")
    if any(c < 0 for c in counts.values()):
        raise ValueError(f"counts must be nonnegative, not {dict(counts)}")
    total_weight = sum(weights.values())
    if total_weight <= 0:
        raise ValueError("at least one arm needs a positive weight")
    total = sum(counts.values())
    expected = {arm: total * w / total_weight for arm, w in weights.items()}
    if any(c > 0 and weights.get(arm, 0.0) == 0 for arm, c in counts.items()):
        return SampleRatio(0.0, True, expected)
    if total == 0:
        return SampleRatio(1.0, False, expected)
    live = [arm for arm, w in weights.items() if w > 0]
    shares = np.array([weights[arm] / total_weight for arm in live])
    x = np.array([counts.get(arm, 0) for arm in live], dtype=float)
    prior = SRM_CONCENTRATION * shares
    log_mixture = float(
        gammaln(SRM_CONCENTRATION)
        - gammaln(SRM_CONCENTRATION + total)
        + np.sum(gammaln(prior + x) - gammaln(prior))
    )
    log_null = float(np.sum(xlogy(x, shares)))
    log_factor = log_mixture - log_null
    p_value = math.exp(-log_factor) if log_factor > 0 else 1.0
    return SampleRatio(p_value, log_factor >= math.log(1.0 / alpha), expected)


def verdict_for(comparison: Comparison, sample_ratio: SampleRatio | None) -> str:
    """One KPI's verdict, `invalid: SRM` whatever the comparison says when the split is off.

    >>> fair = srm({"a": 500, "b": 500}, {"a": 1, "b": 1})
    >>> verdict_for(compare(summarise_binary(300, 500), summarise_binary(200, 500)), fair)
    'worse'
    """
    if sample_ratio is not None and sample_ratio.mismatch:
        return INVALID_SRM
    return comparison.verdict


def arm_verdict(
    primary: Comparison,
    guardrails: Iterable[Comparison] = (),
    sample_ratio: SampleRatio | None = None,
) -> str:
    """An arm's verdict over its primary KPI and guardrails: `invalid: SRM` on a mismatched
    split; `worse` when the primary KPI or any guardrail is worse (a guardrail exists to veto);
    `better` when the primary KPI is better and no guardrail worse; else `inconclusive`.

    >>> worse = compare(summarise_binary(300, 500), summarise_binary(200, 500))
    >>> same = compare(summarise_binary(300, 500), summarise_binary(300, 500))
    >>> arm_verdict(same, [worse])
    'worse'
    """
    if sample_ratio is not None and sample_ratio.mismatch:
        return INVALID_SRM
    if primary.verdict == WORSE or any(g.verdict == WORSE for g in guardrails):
        return WORSE
    return primary.verdict


def _unknown(difference: float) -> Comparison:
    return Comparison(difference, -math.inf, math.inf, 1.0, INCONCLUSIVE)
