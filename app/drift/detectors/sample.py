"""What a drift detector reads of one side of a comparison: a `Sample` of requests.

A sample holds, per request, its structured input features, its world-model latent state per
layer (one vector per request that has one) and its planner decision. A source that lacks a
part leaves it empty: a training dataset has input features only. The store's windows
(`app.drift.windows`) and a benchmark's resampled trials are turned into samples; the
detectors never see where a sample came from.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]

NUMERIC_FIELDS = ("score", "confidence", "margin", "entropy")
_FIELDS = ("chosen", *NUMERIC_FIELDS, "constraints_bound")
_KIND_END = re.compile("[:@]")


def action_kind(label: str) -> str:
    """The kind of an action label: the text before the first ':' or '@', else the label.

    >>> [action_kind(a) for a in ("book:room-a@10", "room-03@2026-11-24T15:00", "clarify")]
    ['book', 'room-03', 'clarify']
    """
    return _KIND_END.split(label, maxsplit=1)[0]


@dataclass(frozen=True, eq=False)
class DecisionSample:
    """Planner decisions of one window, one entry per request in every field."""

    chosen: Sequence[str]
    """The chosen action's label."""
    score: npt.ArrayLike
    """The chosen candidate's score (NaN when unknown)."""
    confidence: npt.ArrayLike
    """The planner's confidence (NaN when it gave none)."""
    margin: npt.ArrayLike
    """Best minus runner-up candidate score (NaN with fewer than two candidates)."""
    entropy: npt.ArrayLike
    """Entropy in nats of the softmax over the candidates' scores."""
    constraints_bound: npt.ArrayLike
    """Whether any constraint bound the decision."""

    def __post_init__(self) -> None:
        sizes = {name: np.shape(getattr(self, name)) for name in _FIELDS}
        if len(set(sizes.values())) != 1 or len(sizes["chosen"]) != 1:
            raise ValueError(f"every field must be a 1-D sequence of the same length, got {sizes}")

    def __len__(self) -> int:
        return len(self.chosen)

    @property
    def kinds(self) -> list[str]:
        return [action_kind(label) for label in self.chosen]

    def take(self, rows: npt.ArrayLike) -> DecisionSample:
        """The decisions at `rows`, in that order."""
        at = np.asarray(rows, dtype=np.int64)
        chosen = list(self.chosen)
        fields = {
            name: np.asarray(getattr(self, name))[at]
            for name in (*NUMERIC_FIELDS, "constraints_bound")
        }
        return DecisionSample(chosen=[chosen[i] for i in at], **fields)

    def values(self, field: str) -> FloatArray:
        """The finite values of a numeric field (NaN and infinities left out)."""
        array = np.asarray(getattr(self, field), dtype=np.float64)
        return array[np.isfinite(array)]

    @classmethod
    def from_decisions(cls, rows: Iterable[Mapping[str, Any]]) -> DecisionSample:
        """Build a sample from decision dicts as the planner reports them:

        `{"chosen": "book:room-a@10", "candidates": [{"action": ..., "score": ...}, ...],
        "constraints": [{"name": ..., "bound": bool}, ...], "confidence": float | None}`.

        `candidates` and `constraints` may also be JSON strings (as in the `planner.*` span
        attributes). `score`, `margin`, `entropy` and `constraints_bound` are taken from the
        row when present, else computed from the candidates and constraints.
        """
        chosen: list[str] = []
        numbers: dict[str, list[float]] = {field: [] for field in NUMERIC_FIELDS}
        bound: list[bool] = []
        for index, row in enumerate(rows):
            if "chosen" not in row:
                raise ValueError(f"decision {index} has no 'chosen' action")
            label = "(none)" if row["chosen"] is None else str(row["chosen"])
            candidates = [c for c in _json_list(row.get("candidates")) if isinstance(c, Mapping)]
            scores = [float(c["score"]) for c in candidates if c.get("score") is not None]
            ranked = sorted(scores, reverse=True)
            chosen_score = next(
                (
                    float(c["score"])
                    for c in candidates
                    if c.get("action") == label and c.get("score") is not None
                ),
                math.nan,
            )
            computed = {
                "score": chosen_score,
                "confidence": math.nan,
                "margin": ranked[0] - ranked[1] if len(ranked) >= 2 else math.nan,
                "entropy": _softmax_entropy(scores),
            }
            for field in NUMERIC_FIELDS:
                given = row.get(field)
                numbers[field].append(computed[field] if given is None else float(given))
            chosen.append(label)
            if row.get("constraints_bound") is not None:
                bound.append(bool(row["constraints_bound"]))
            else:
                constraints = _json_list(row.get("constraints"))
                bound.append(
                    any(isinstance(c, Mapping) and bool(c.get("bound")) for c in constraints)
                )
        return cls(
            chosen=chosen,
            score=np.asarray(numbers["score"]),
            confidence=np.asarray(numbers["confidence"]),
            margin=np.asarray(numbers["margin"]),
            entropy=np.asarray(numbers["entropy"]),
            constraints_bound=np.asarray(bound, dtype=bool),
        )


def _no_decisions() -> DecisionSample:
    empty = np.zeros(0, dtype=np.float64)
    return DecisionSample(
        chosen=[], score=empty, confidence=empty, margin=empty, entropy=empty,
        constraints_bound=np.zeros(0, dtype=bool),
    )  # fmt: skip


@dataclass(frozen=True, eq=False)
class Sample:
    """One side of a comparison, as every detector reads it (see the module docstring)."""

    features: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    """Input features, one row per request, one column per feature."""
    latent: Mapping[str, npt.NDArray[Any]] = dataclasses.field(default_factory=dict)
    """Per world-model layer, the (requests with a state, dimensions) latent vectors."""
    decisions: DecisionSample = dataclasses.field(default_factory=_no_decisions)
    """The planner decisions, one per request that has one."""


def _json_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | bytes):
        value = json.loads(value)
    return list(value) if isinstance(value, list | tuple) else []


def _softmax_entropy(scores: Sequence[float]) -> float:
    if not scores:
        return math.nan
    array = np.asarray(scores, dtype=np.float64)
    weights = np.exp(array - array.max())
    p = weights / weights.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())
