"""Out-of-distribution scoring of latent states against a model version's reference.

A request's latent state is the projection vector of its world model's last rollout step at
the last watched layer (the state row with the highest step, then the highest sequence
number). A version's reference is the latent state of its first `ood_reference_count`
requests. A shrunk covariance (Ledoit-Wolf) is fitted on the reference, because a projection
of dozens of dimensions from a few hundred requests makes the plain sample covariance
ill-conditioned; a state is out of distribution when its Mahalanobis distance to the
reference mean exceeds the `ood_quantile` of the reference's own distances.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, Text, and_, cast, select

from app.store.tables import RequestModel, WorldModelState

# Fewer reference states than this, and no version is judged out of distribution.
MIN_REFERENCE = 20


@dataclass(frozen=True)
class LatentState:
    """A request's last-step projection at its last watched layer."""

    layer: str
    vector: tuple[float, ...]


def last_states(rows: Iterable[Sequence[Any]]) -> dict[str, LatentState]:
    """Per trace, its last state, from `(trace_id, step, seq, layer, projection JSON)` rows."""
    best: dict[str, tuple[int, int, str, str]] = {}
    for trace_id, step, seq, layer, projection in rows:
        key = (int(step), int(seq))
        found = best.get(trace_id)
        if projection and (found is None or key > found[:2]):
            best[trace_id] = (key[0], key[1], layer, projection)
    out = {}
    for trace_id, (_, _, layer, projection) in best.items():
        vector = orjson.loads(projection)
        if isinstance(vector, list) and vector:
            out[trace_id] = LatentState(layer, tuple(float(v) for v in vector))
    return out


def state_columns() -> tuple[Any, ...]:
    return (
        WorldModelState.trace_id,
        WorldModelState.step,
        WorldModelState.seq,
        WorldModelState.layer,
        cast(WorldModelState.projection, Text),
    )


@dataclass(frozen=True)
class Reference:
    """A fitted reference: the layer and width it judges, and the distance threshold."""

    layer: str
    location: np.ndarray
    precision: np.ndarray
    threshold: float
    size: int

    def distance(self, state: LatentState) -> float | None:
        """Squared Mahalanobis distance, or None for a state of another layer or width."""
        if state.layer != self.layer or len(state.vector) != len(self.location):
            return None
        centred = np.asarray(state.vector) - self.location
        return float(centred @ self.precision @ centred)

    def outside(self, state: LatentState) -> bool | None:
        found = self.distance(state)
        return None if found is None else found > self.threshold


def fit(states: Sequence[LatentState], quantile: float) -> Reference | None:
    """The reference of these states (None when too few share a layer and width)."""
    if not states:
        return None
    shapes: dict[tuple[str, int], int] = {}
    for state in states:
        shape = (state.layer, len(state.vector))
        shapes[shape] = shapes.get(shape, 0) + 1
    (layer, width), count = max(shapes.items(), key=lambda item: item[1])
    if count < MIN_REFERENCE:
        return None
    from sklearn.covariance import LedoitWolf

    matrix = np.asarray([s.vector for s in states if s.layer == layer and len(s.vector) == width])
    model = LedoitWolf().fit(matrix)
    location = np.asarray(model.location_, dtype=np.float64)
    precision = np.asarray(model.precision_, dtype=np.float64)
    centred = matrix - location
    own = np.einsum("ij,jk,ik->i", centred, precision, centred)
    return Reference(layer, location, precision, float(np.quantile(own, quantile)), count)


def reference_for(
    conn: Connection, project_id: int, name: str, version: str, count: int, quantile: float
) -> Reference | None:
    """The version's reference: the last states of its first `count` requests."""
    first = (
        select(RequestModel.trace_id)
        .where(
            RequestModel.project_id == project_id,
            RequestModel.model_name == name,
            RequestModel.model_version == version,
        )
        .order_by(RequestModel.start_time_unix_nano, RequestModel.trace_id)
        .limit(count)
        .subquery()
    )
    query = select(*state_columns()).join(
        first,
        and_(
            WorldModelState.project_id == project_id, WorldModelState.trace_id == first.c.trace_id
        ),
    )
    states = last_states(conn.execute(query))
    return fit(list(states.values()), quantile)
