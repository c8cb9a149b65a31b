"""Decision drift of the planner: does it now decide differently from the reference window?

What is compared, one hypothesis test each (p-values from scipy):

| test | on | method |
|---|---|---|
| `chi2:kind` | the mix of chosen action kinds | chi-square test of homogeneity |
| `psi:kind` | the same mix | population stability index |
| `psi:score` | the chosen candidate's score | population stability index |
| `ks:<field>` | score, confidence, margin, entropy | two-sample Kolmogorov-Smirnov |
| `proportion:constraints_bound` | share of decisions a constraint bound | two-proportion z |

The proportion test is Fisher's exact test instead when an expected count is under 5.

Action kinds. Labels such as `book:room-a@10` or `room-03@2026-11-24T15:00/2h` carry a time,
so nearly every label is new and a test over labels would only count novelty. The chosen
action is therefore reduced to its kind: the text before the first ':' or '@', whichever comes
first (`book`, `room-03`), or the whole label when it has neither (`clarify`); a decision
without a chosen action counts as the kind "(none)". Kinds whose expected count is under 5 in
the smaller sample are pooled into "(other)" before the chi-square test and PSI, so that the
chi-square approximation holds.

PSI. `Σ (c_i - r_i) ln(c_i / r_i)` over bins, with the proportions `r_i` (reference) and `c_i`
(current) floored at `PSI_EPSILON` = 1e-4 so that an empty bin gives a large but finite term.
Bins: the pooled kinds for `psi:kind`; for `psi:score`, 10 bins cut at the reference's deciles
(ties merged), the outer two open-ended. Its p-value uses the approximation that under no
shift `PSI / (1/n + 1/m)` follows χ² with (bins - 1) degrees of freedom (Yurdakul, 2018); the
usual reading of PSI itself (< 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift) is left
to the reader, since at small samples PSI passes 0.1 by chance alone.

Verdict. The tests are corrected together with Holm's method (a family-wise error rate, valid
whatever the dependence between the tests, and at least as powerful as Bonferroni). A test says
"drift" when its adjusted p is ≤ `drift_p` (0.01) and "warn" when ≤ `warn_p` (0.05); the
sample's verdict is the worst of them. Under no shift "drift" thus comes up on at most 1% and
"warn" or "drift" on at most 5% of windows.

Missing values (no confidence, a single candidate so no margin) are NaN and left out of their
test; a test with fewer than `MIN_SAMPLES` values on a side is skipped and listed as such.
Samples with fewer than `MIN_SAMPLES` decisions raise ValueError.

    >>> ref = DecisionSample.from_decisions(
    ...     {"chosen": "book:a", "candidates": [{"action": "book:a", "score": 1.0 + i % 3},
    ...                                         {"action": "clarify", "score": 0.5}]}
    ...     for i in range(100))
    >>> decision_drift(ref, ref).verdict
    'none'
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Self

import numpy as np
import numpy.typing as npt
from scipy import stats

from app.drift.detectors.protocol import (
    TRAFFIC,
    DriftResult,
    Options,
    Skipped,
    Source,
    Verdict,
    holm,
    verdict_for,
)
from app.drift.detectors.sample import NUMERIC_FIELDS, DecisionSample, Sample

FloatArray = npt.NDArray[np.float64]

MIN_SAMPLES = 20
MIN_EXPECTED = 5.0
OTHER = "(other)"
PSI_EPSILON = 1e-4
PSI_SCORE_BINS = 10
_BINDING = "proportion:constraints_bound"


def pooled_counts(reference: Sequence[str], current: Sequence[str]) -> tuple[list[str], FloatArray]:
    """The 2 x K table of category counts (reference row, current row) for a chi-square test
    of homogeneity: categories with an expected count under `MIN_EXPECTED` in the smaller
    sample are pooled into OTHER; the most frequent come first.

    >>> pooled_counts(["a"] * 30 + ["b"] * 30 + ["c"], ["a"] * 40 + ["b"] * 20 + ["d"])
    (['a', 'b', '(other)'], array([[30., 30.,  1.],
           [40., 20.,  1.]]))
    """
    ref_counts, cur_counts = Counter(reference), Counter(current)
    totals = ref_counts + cur_counts
    smaller, everyone = min(len(reference), len(current)), len(reference) + len(current)
    ordered = sorted(totals, key=lambda kind: (-totals[kind], kind))
    kept = [kind for kind in ordered if totals[kind] * smaller / everyone >= MIN_EXPECTED]
    rare = ordered[len(kept) :]  # sorted by count, so the rare ones are the tail
    rows = [[ref_counts[kind] for kind in kept], [cur_counts[kind] for kind in kept]]
    categories = list(kept)
    if rare:
        categories.append(OTHER)
        rows[0].append(sum(ref_counts[kind] for kind in rare))
        rows[1].append(sum(cur_counts[kind] for kind in rare))
    return categories, np.asarray(rows, dtype=np.float64)


@dataclass(frozen=True)
class DecisionTest:
    name: str
    """What was compared, e.g. "chi2:kind" or "ks:margin"."""
    method: str
    """The test: chi2_contingency, psi, ks_2samp, two_proportion_z or fisher_exact."""
    statistic: float
    p_value: float
    adjusted_p: float
    """Holm-adjusted over the tests that ran."""
    verdict: Verdict
    reference: dict[str, float]
    """A summary of the reference side (proportions, rate, or mean and median)."""
    current: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "adjusted_p": self.adjusted_p,
            "verdict": self.verdict,
            "reference": dict(self.reference),
            "current": dict(self.current),
        }


@dataclass(frozen=True)
class DecisionDrift:
    n_reference: int
    n_current: int
    tests: tuple[DecisionTest, ...]
    skipped: tuple[str, ...]
    """Tests that did not run, each with the reason."""
    reasons: tuple[str, ...]
    """Names of the tests at "warn" or "drift", most significant first."""
    verdict: Verdict

    def to_json(self) -> dict[str, Any]:
        return {
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "correction": "holm",
            "tests": [test.to_json() for test in self.tests],
            "skipped": list(self.skipped),
            "reasons": list(self.reasons),
            "verdict": self.verdict,
        }

    def test(self, name: str) -> DecisionTest:
        """The test called `name`; KeyError if it did not run."""
        for found in self.tests:
            if found.name == name:
                return found
        raise KeyError(name)


def decision_drift(
    reference: DecisionSample,
    current: DecisionSample,
    *,
    warn_p: float = 0.05,
    drift_p: float = 0.01,
) -> DecisionDrift:
    """Compare the planner's decisions in `current` with those in `reference`.

    See the module docstring for the tests, the correction and the verdicts.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> def window(bind_rate: float) -> DecisionSample:
    ...     return DecisionSample(
    ...         chosen=list(rng.choice(["book:r1@9", "clarify"], 400)),
    ...         score=rng.normal(size=400), confidence=rng.random(400),
    ...         margin=rng.exponential(size=400), entropy=rng.random(400),
    ...         constraints_bound=rng.random(400) < bind_rate)
    >>> found = decision_drift(window(0.1), window(0.3))
    >>> found.verdict, found.reasons
    ('drift', ('proportion:constraints_bound',))
    """
    if not 0 < drift_p <= warn_p < 1:
        raise ValueError(f"need 0 < drift_p <= warn_p < 1, got {drift_p=} and {warn_p=}")
    for name, sample in (("reference", reference), ("current", current)):
        if len(sample) < MIN_SAMPLES:
            raise ValueError(
                f"the {name} sample has {len(sample)} decisions; decision drift needs at least "
                f"{MIN_SAMPLES} per side: widen the window or wait for more traffic"
            )
    skipped: list[str] = []
    outcomes = [
        *_kind_tests(reference.kinds, current.kinds, skipped),
        *_distribution_tests(reference, current, skipped),
        _binding_test(
            np.asarray(reference.constraints_bound, dtype=bool),
            np.asarray(current.constraints_bound, dtype=bool),
        ),
    ]
    adjusted = holm([outcome.p_value for outcome in outcomes])
    tests = tuple(
        DecisionTest(
            name=outcome.name,
            method=outcome.method,
            statistic=outcome.statistic,
            p_value=outcome.p_value,
            adjusted_p=adj,
            verdict=verdict_for(adj, warn_p, drift_p),
            reference=outcome.reference,
            current=outcome.current,
        )
        for outcome, adj in zip(outcomes, adjusted, strict=True)
    )
    flagged = sorted((t for t in tests if t.verdict != "none"), key=lambda t: t.adjusted_p)
    verdict: Verdict = (
        "drift" if any(t.verdict == "drift" for t in tests) else "warn" if flagged else "none"
    )
    return DecisionDrift(
        n_reference=len(reference),
        n_current=len(current),
        tests=tests,
        skipped=tuple(skipped),
        reasons=tuple(t.name for t in flagged),
        verdict=verdict,
    )


class DecisionDetector:
    """Decision drift as a `Detector`: the current window's decisions against those of the
    traffic reference (the training data holds no plans), with `decision_drift`.

    `share_drifted` is the share of the tests that ran at "drift".
    """

    references: tuple[Source, ...] = (TRAFFIC,)

    def __init__(self, options: Options = Options()) -> None:
        self.options = options
        self._reference: DecisionSample | None = None

    def fit(self, reference: Sample) -> Self:
        self._reference = reference.decisions
        return self

    def test(self, current: Sample) -> DriftResult:
        if self._reference is None:
            raise RuntimeError("fit the detector on a reference first")
        if min(len(current.decisions), len(self._reference)) < self.options.min_requests:
            raise Skipped("too few planner decisions in one of the windows")
        found = decision_drift(self._reference, current.decisions)
        scores = found.to_json()
        share = sum(t.verdict == "drift" for t in found.tests) / max(len(found.tests), 1)
        scores["share_drifted"] = share
        return DriftResult(found.verdict, share, scores)


class _Outcome(NamedTuple):
    name: str
    method: str
    statistic: float
    p_value: float
    reference: dict[str, float]
    current: dict[str, float]


def _kind_tests(reference: list[str], current: list[str], skipped: list[str]) -> list[_Outcome]:
    categories, table = pooled_counts(reference, current)
    if len(categories) < 2:
        skipped.extend(
            f"{name}: one action kind only ({categories[0]!r}), nothing to compare"
            for name in ("chi2:kind", "psi:kind")
        )
        return []
    ref_share = dict(zip(categories, (table[0] / table[0].sum()).tolist(), strict=True))
    cur_share = dict(zip(categories, (table[1] / table[1].sum()).tolist(), strict=True))
    chi2 = stats.chi2_contingency(table, correction=False)
    psi, psi_p = _psi(table[0], table[1])
    return [
        _Outcome(
            "chi2:kind", "chi2_contingency", float(chi2.statistic), float(chi2.pvalue),
            ref_share, cur_share,
        ),
        _Outcome("psi:kind", "psi", psi, psi_p, ref_share, cur_share),
    ]  # fmt: skip


def _distribution_tests(
    reference: DecisionSample, current: DecisionSample, skipped: list[str]
) -> list[_Outcome]:
    found = []
    ref_score, cur_score = reference.values("score"), current.values("score")
    if _enough("psi:score", ref_score, cur_score, skipped):
        psi, psi_p = _psi(*_decile_counts(ref_score, cur_score))
        found.append(
            _Outcome("psi:score", "psi", psi, psi_p, _moments(ref_score), _moments(cur_score))
        )
    for field in NUMERIC_FIELDS:
        ref_values, cur_values = reference.values(field), current.values(field)
        if _enough(f"ks:{field}", ref_values, cur_values, skipped):
            ks = stats.ks_2samp(ref_values, cur_values)
            found.append(
                _Outcome(
                    f"ks:{field}", "ks_2samp", float(ks.statistic), float(ks.pvalue),
                    _moments(ref_values), _moments(cur_values),
                )
            )  # fmt: skip
    return found


def _binding_test(reference: npt.NDArray[np.bool_], current: npt.NDArray[np.bool_]) -> _Outcome:
    """Two-proportion z-test of the binding rates; Fisher's exact test when an expected count
    is under `MIN_EXPECTED`. The statistic is z either way."""
    n, m = len(reference), len(current)
    x, y = int(reference.sum()), int(current.sum())
    rates = {"rate": x / n}, {"rate": y / m}
    pooled = (x + y) / (n + m)
    if pooled in (0.0, 1.0):
        return _Outcome(_BINDING, "two_proportion_z", 0.0, 1.0, *rates)
    z = (x / n - y / m) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    if min(pooled, 1 - pooled) * min(n, m) < MIN_EXPECTED:
        p_value = float(stats.fisher_exact([[x, n - x], [y, m - y]]).pvalue)
        return _Outcome(_BINDING, "fisher_exact", z, p_value, *rates)
    return _Outcome(_BINDING, "two_proportion_z", z, float(2 * stats.norm.sf(abs(z))), *rates)


def _psi(reference_counts: FloatArray, current_counts: FloatArray) -> tuple[float, float]:
    n, m = float(reference_counts.sum()), float(current_counts.sum())
    r = np.maximum(reference_counts / n, PSI_EPSILON)
    c = np.maximum(current_counts / m, PSI_EPSILON)
    psi = float(np.sum((c - r) * np.log(c / r)))
    bins = len(reference_counts)
    if bins < 2:
        return psi, 1.0
    return psi, float(stats.chi2.sf(psi / (1 / n + 1 / m), df=bins - 1))


def _decile_counts(reference: FloatArray, current: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Counts in bins cut at the reference's deciles: (-∞, q10], (q10, q20], ..., (q90, ∞)."""
    edges = np.unique(np.quantile(reference, np.arange(1, PSI_SCORE_BINS) / PSI_SCORE_BINS))
    bins = len(edges) + 1
    ref_bins = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=bins)
    cur_bins = np.bincount(np.searchsorted(edges, current, side="left"), minlength=bins)
    return ref_bins.astype(np.float64), cur_bins.astype(np.float64)


def _enough(name: str, reference: FloatArray, current: FloatArray, skipped: list[str]) -> bool:
    if min(len(reference), len(current)) >= MIN_SAMPLES:
        return True
    skipped.append(
        f"{name}: {len(reference)} reference and {len(current)} current values, "
        f"needs {MIN_SAMPLES} on each side"
    )
    return False


def _moments(values: FloatArray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "median": float(np.median(values))}
