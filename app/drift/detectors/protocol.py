"""The one protocol every drift detector keeps, and what it answers.

A detector is made with `Options`, fitted once on a reference `Sample`, then tested on as
many current samples as one likes:

    detector = LatentDetector(Options(seed=3)).fit(reference)
    result = detector.test(current)      # a DriftResult, or Skipped with the reason

`references` says which references it can be fitted on, preferred first: the training
dataset of the version's lineage (input features only) or a window of the version's own
traffic. A detector that cannot judge the data it is given (no states recorded, too few
decisions) raises `Skipped`: too little data is no evidence that nothing moved, so it is
never answered with "none". A fitted detector is not changed by `test`, so one fitted
detector may be kept and tested from several threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Self, runtime_checkable

from statsmodels.stats.multitest import multipletests

from app.drift.detectors.sample import Sample

Verdict = Literal["none", "warn", "drift"]
SEVERITY: Mapping[str, int] = {"none": 0, "warn": 1, "drift": 2}

Source = Literal["training dataset", "traffic"]
TRAINING: Source = "training dataset"
"""The training dataset the version's MLflow run logged: input features only."""
TRAFFIC: Source = "traffic"
"""A window of the version's own traffic: features, latent states, decisions."""


def verdict_for(p_value: float, warn_p: float, drift_p: float) -> Verdict:
    """The verdict a p-value earns against the thresholds (`drift_p <= warn_p`)."""
    return "drift" if p_value <= drift_p else "warn" if p_value <= warn_p else "none"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: a detector that runs several
    tests (per statistic, per layer) judges on these, so that its verdict's false-positive
    rate is the threshold's, not the threshold times the number of tests.

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    if not p_values:
        return []
    adjusted = multipletests(list(p_values), method="holm")[1]
    return [float(p) for p in adjusted]


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe of `verdicts` ("none" when there are none).

    >>> worst(["none", "warn", "none"])
    'warn'
    """
    return max(verdicts, key=SEVERITY.__getitem__, default="none")


class Skipped(Exception):
    """A kind that cannot be judged on this data, and why."""


@dataclass(frozen=True)
class Options:
    """What a project's drift settings and a job's arguments tell every detector."""

    min_requests: int = 50
    """Fewer rows than this on a side (requests, states of a layer, decisions) is no test."""
    permutations: int = 100
    """Permutations of a permutation test (the latent states')."""
    seed: int = 0
    """Seed of every random draw, so that a job run again gives the same figures."""
    artifacts: bool = True
    """Whether to make the reports meant for people (Evidently's HTML): off where nobody
    reads them, since they can cost more than the test."""


@dataclass(frozen=True)
class DriftResult:
    """One kind's answer for one current sample."""

    verdict: Verdict
    share_drifted: float
    """The share of the kind's parts that drifted (columns, layers, tests), in [0, 1]."""
    scores: dict[str, Any]
    """Every figure behind the verdict, in plain numbers, strings and lists (stored as is)."""
    artifacts: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Reports for people by file name (`inputs.html`), logged beside the job's report."""


@runtime_checkable
class Detector(Protocol):
    """Fitted on a reference, tested on current samples; see the module docstring."""

    references: tuple[Source, ...]
    """The references it can be fitted on, preferred first."""

    def fit(self, reference: Sample) -> Self:
        """Learn the reference (raises Skipped when it holds nothing to learn); returns self."""
        ...

    def test(self, current: Sample) -> DriftResult:
        """Judge `current` against the fitted reference; raises Skipped when it cannot."""
        ...


DetectorFactory = Callable[[Options], Detector]
"""A detector class, or anything else that makes a detector from `Options`."""
