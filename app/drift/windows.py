"""The traffic a drift job compares: a model version's requests in a window, read from the
typed tables (never from raw spans) in a few streaming queries.

A window holds, per request: its input features (`requests.features`), its world-model latent
state per layer (the mean of the layer's projection vectors over the rollout's steps: one
vector per request, so the rows a permutation test shuffles are independent requests, not the
correlated steps of one rollout), and its planner decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import Engine, Text, and_, cast, func, select

from app.db import read_connection
from app.ingest.decision_summary import summarise
from app.models import PlannerDecision, Request, RequestModel, WorldModelState


@dataclass(frozen=True)
class Bounds:
    """A half-open time range `[start, end)` of request start times, in Unix nanoseconds."""

    start: int
    end: int


@dataclass
class Window:
    """A version's traffic in `bounds`, request by request (row `i` is `trace_ids[i]`)."""

    bounds: Bounds
    trace_ids: list[str]
    features: pd.DataFrame
    # layer -> (rows, indices into trace_ids), one mean projection per request that has one.
    latent: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # (decision dict, index into trace_ids)
    decisions: list[tuple[dict[str, Any], int]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.trace_ids)

    def subset(self, rows: np.ndarray) -> Window:
        """The same window restricted to the requests at `rows` (for resampling trials)."""
        keep = np.zeros(len(self.trace_ids), dtype=bool)
        keep[rows] = True
        renumber = np.cumsum(keep) - 1
        latent = {}
        for layer, (vectors, owners) in self.latent.items():
            mask = keep[owners]
            latent[layer] = (vectors[mask], renumber[owners[mask]])
        return Window(
            bounds=self.bounds,
            trace_ids=[t for t, k in zip(self.trace_ids, keep, strict=True) if k],
            features=self.features[keep].reset_index(drop=True),
            latent=latent,
            decisions=[(d, int(renumber[i])) for d, i in self.decisions if keep[i]],
        )


def _model_filter(project_id: int, name: str, version: str) -> Any:
    return and_(
        RequestModel.project_id == project_id,
        RequestModel.model_name == name,
        RequestModel.model_version == version,
    )


def nth_start(
    engine: Engine, project_id: int, name: str, version: str, n: int, newest: bool
) -> int | None:
    """Start time of the version's `n`-th newest (or oldest) request; None if it has fewer."""
    column = RequestModel.start_time_unix_nano
    query = (
        select(column)
        .where(_model_filter(project_id, name, version))
        .order_by(column.desc() if newest else column.asc())
        .offset(n - 1)
        .limit(1)
    )
    with read_connection(engine) as conn:
        found = conn.execute(query).scalar_one_or_none()
    return None if found is None else int(found)


def span_of_traffic(engine: Engine, project_id: int, name: str, version: str) -> Bounds | None:
    """First and last request start of the version (end exclusive), or None without traffic."""
    column = RequestModel.start_time_unix_nano
    query = select(func.min(column), func.max(column), func.count()).where(
        _model_filter(project_id, name, version)
    )
    with read_connection(engine) as conn:
        first, last, count = conn.execute(query).one()
    if not count:
        return None
    return Bounds(int(first), int(last) + 1)


def count_in(engine: Engine, project_id: int, name: str, version: str, bounds: Bounds) -> int:
    column = RequestModel.start_time_unix_nano
    query = select(func.count()).where(
        _model_filter(project_id, name, version), column >= bounds.start, column < bounds.end
    )
    with read_connection(engine) as conn:
        return int(conn.execute(query).scalar_one())


def load(engine: Engine, project_id: int, name: str, version: str, bounds: Bounds) -> Window:
    """Everything the three drift kinds need about the version's requests in `bounds`."""
    in_window = and_(
        _model_filter(project_id, name, version),
        RequestModel.start_time_unix_nano >= bounds.start,
        RequestModel.start_time_unix_nano < bounds.end,
    )
    requests = (
        select(Request.trace_id, cast(Request.features, Text).label("features"))
        .join(
            RequestModel,
            and_(
                RequestModel.project_id == Request.project_id,
                RequestModel.trace_id == Request.trace_id,
            ),
        )
        .where(in_window)
        .order_by(RequestModel.start_time_unix_nano, Request.trace_id)
    )
    states = (
        # The projection as JSON text: parsed in one call per layer below, not row by row.
        select(
            WorldModelState.trace_id,
            WorldModelState.layer,
            cast(WorldModelState.projection, Text).label("projection"),
        )
        .join(
            RequestModel,
            and_(
                RequestModel.project_id == WorldModelState.project_id,
                RequestModel.trace_id == WorldModelState.trace_id,
            ),
        )
        .where(in_window, WorldModelState.project_id == project_id)
    )
    decisions = (
        select(
            PlannerDecision.trace_id,
            PlannerDecision.chosen,
            PlannerDecision.confidence,
            PlannerDecision.chosen_score,
            PlannerDecision.margin,
            PlannerDecision.entropy,
            PlannerDecision.n_candidates,
            PlannerDecision.constraints_bound,
        )
        .join(
            RequestModel,
            and_(
                RequestModel.project_id == PlannerDecision.project_id,
                RequestModel.trace_id == PlannerDecision.trace_id,
            ),
        )
        .where(in_window, PlannerDecision.project_id == project_id)
    )
    with read_connection(engine) as conn:
        rows = conn.execute(requests).all()
        trace_ids = [r.trace_id for r in rows]
        index = {t: i for i, t in enumerate(trace_ids)}
        parsed = orjson.loads("[" + ",".join(r.features or "null" for r in rows) + "]")
        features = pd.DataFrame.from_records([f if isinstance(f, dict) else {} for f in parsed])
        by_layer: dict[str, tuple[list[int], list[list[float]]]] = {}
        texts: dict[str, tuple[list[int], list[str]]] = {}
        for trace_id, layer, projection in conn.execute(states).all():
            owner = index.get(trace_id)
            if owner is None or not projection or projection == "null":
                continue
            owners, raw = texts.setdefault(layer, ([], []))
            owners.append(owner)
            raw.append(projection)
        for layer, (owners, raw) in texts.items():
            by_layer[layer] = (owners, orjson.loads("[" + ",".join(raw) + "]"))
        found_decisions = []
        unsummarised = []
        for d in conn.execute(decisions).all():
            owner = index.get(d.trace_id)
            if owner is None:
                continue
            found_decisions.append((dict(d._mapping), owner))
            if d.n_candidates is None:
                unsummarised.append(len(found_decisions) - 1)
        if unsummarised:
            _summarise_late(conn, project_id, [found_decisions[i][0] for i in unsummarised])
    latent = {layer: _mean_per_request(*found) for layer, found in by_layer.items()}
    found_decisions.sort(key=lambda item: item[1])
    return Window(bounds, trace_ids, features, latent, found_decisions)


def _mean_per_request(
    owners: list[int], vectors: list[list[float]]
) -> tuple[np.ndarray, np.ndarray]:
    """One vector per request: the mean of its steps' projections, vectorised."""
    widths = [len(v) for v in vectors]
    common = max(set(widths), key=widths.count)
    if any(w != common for w in widths):
        # A projection width changed mid-window (a new SDK setting): rows of another width
        # cannot be compared with these; the most common width wins.
        kept = [i for i, w in enumerate(widths) if w == common]
        owners = [owners[i] for i in kept]
        vectors = [vectors[i] for i in kept]
    rows = np.asarray(vectors, dtype=np.float64)
    unique, position = np.unique(np.asarray(owners, dtype=np.int64), return_inverse=True)
    sums = np.zeros((len(unique), common))
    np.add.at(sums, position, rows)
    counts = np.bincount(position, minlength=len(unique)).astype(np.float64)
    return (sums / counts[:, None]).astype(np.float32), unique


def _summarise_late(conn: Any, project_id: int, decisions: list[dict[str, Any]]) -> None:
    """Decisions stored before summaries were computed at ingest: computed here from the
    stored candidates."""
    wanted = {d["trace_id"] for d in decisions}
    found = {
        row.trace_id: summarise(row.candidates or [], row.chosen)
        for row in conn.execute(
            select(PlannerDecision.trace_id, PlannerDecision.chosen, PlannerDecision.candidates)
            .where(PlannerDecision.project_id == project_id)
            .where(PlannerDecision.trace_id.in_(wanted))
        )
    }
    for decision in decisions:
        decision.update(found.get(decision["trace_id"], {}))
