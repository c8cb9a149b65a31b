"""The world model's latent trajectory of one request, as chart series per layer, and the
planner's candidates as table rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.store.read_models import DecisionOut, StateOut

STATS = ("mean", "std", "min", "max", "l2_norm")


@dataclass(frozen=True)
class LayerTrajectory:
    """One layer over the rollout's steps: each statistic per step, and each projection
    dimension per step (averaged when the layer ran more than once at a step)."""

    layer: str
    steps: list[int]
    stats: dict[str, list[float | None]]
    projection: list[list[float | None]]
    count: int  # captured states


@dataclass(frozen=True)
class CandidateRow:
    action: str
    score: Any
    predicted: list[Any]  # one per `CandidateTable.predicted` outcome
    extra: list[Any]  # one per `CandidateTable.extra` field
    chosen: bool


@dataclass(frozen=True)
class CandidateTable:
    """A decision's candidates as rows, with the columns every candidate may fill."""

    predicted: list[str]
    extra: list[str]
    rows: list[CandidateRow]


def by_layer(states: list[StateOut]) -> list[LayerTrajectory]:
    """States (step, layer, summary statistics, projection) -> one entry per layer."""
    layers: dict[str, dict[int, list[StateOut]]] = {}
    for state in states:
        layers.setdefault(state.layer, {}).setdefault(state.step, []).append(state)
    out = []
    for layer, steps in layers.items():
        xs = sorted(steps)
        stats = {name: [_mean([getattr(s, name) for s in steps[x]]) for x in xs] for name in STATS}
        width = max((len(s.projection) for x in xs for s in steps[x]), default=0)
        projection = [
            [_mean([_at(s.projection, d) for s in steps[x]]) for x in xs] for d in range(width)
        ]
        out.append(LayerTrajectory(layer, xs, stats, projection,
                                   sum(len(v) for v in steps.values())))  # fmt: skip
    return out


def _at(values: list[Any] | None, index: int) -> float | None:
    if not values or index >= len(values):
        return None
    value = values[index]
    return float(value) if isinstance(value, int | float) else None


def _mean(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return round(sum(numbers) / len(numbers), 6) if numbers else None


def candidate_table(decision: DecisionOut) -> CandidateTable:
    """A decision's candidates as rows of columns: action, score, each predicted outcome,
    the remaining scalar fields; the chosen one flagged."""
    candidates = [c for c in decision.candidates if isinstance(c, dict)]
    predicted: list[str] = []
    extra: list[str] = []
    for c in candidates:
        for key, value in (c.get("predicted") or {}).items():
            if key not in predicted and _scalar(value):
                predicted.append(key)
        for key, value in c.items():
            if key not in ("action", "score", "predicted") and key not in extra and _scalar(value):
                extra.append(key)
    rows = []
    for c in candidates:
        outcomes = c.get("predicted") or {}
        rows.append(
            CandidateRow(
                action=str(c.get("action", "")),
                score=c.get("score"),
                predicted=[outcomes.get(k) for k in predicted],
                extra=[c.get(k) for k in extra],
                chosen=decision.chosen is not None and c.get("action") == decision.chosen,
            )
        )
    return CandidateTable(predicted, extra, rows)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
