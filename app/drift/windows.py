"""The traffic a drift job compares: a model version's requests in a window, read from the
typed tables (never from raw spans) in a few streaming queries.

A window holds, per request: its input features (`requests.features`), its world-model latent
state per layer (the mean of the layer's projection vectors over the rollout's steps: one
vector per request, so the rows a permutation test shuffles are independent requests, not the
correlated steps of one rollout), and its planner decision.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import (
    ClauseElement,
    Connection,
    Engine,
    Text,
    and_,
    cast,
    func,
    select,
    true,
)
from sqlalchemy.sql.compiler import SQLCompiler

from app.drift.detectors.sample import DecisionSample, Sample
from app.ingest.decision_summary import summarise
from app.store.engine import read_connection
from app.store.tables import PlannerDecision, Request, RequestModel, WorldModelState


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
    # The planner decisions, in request order, and the index into trace_ids of each.
    decisions: DecisionSample = field(default_factory=lambda: decision_columns([]))
    decision_owners: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def requests(self) -> int:
        return len(self.trace_ids)

    def sample(self) -> Sample:
        """The window as the detectors read it (the same arrays, not copies)."""
        latent = {layer: vectors for layer, (vectors, _) in self.latent.items()}
        return Sample(self.features, latent, self.decisions)

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
            decisions=self.decisions.take(np.flatnonzero(keep[self.decision_owners])),
            decision_owners=renumber[self.decision_owners[keep[self.decision_owners]]],
        )


# The decision columns a window reads: the chosen action and the summaries ingest computes.
DECISION_COLUMNS = (
    "chosen",
    "confidence",
    "chosen_score",
    "margin",
    "entropy",
    "n_candidates",
    "constraints_bound",
)
_DECISION_KEYS = ("trace_id", *DECISION_COLUMNS)
_N_CANDIDATES = _DECISION_KEYS.index("n_candidates")  # None: stored before summaries


def _model_filter(project_id: int, name: str, version: str) -> Any:
    return and_(
        RequestModel.project_id == project_id,
        RequestModel.model_name == name,
        RequestModel.model_version == version,
    )


def nth_start(
    engine: Engine,
    project_id: int,
    name: str,
    version: str,
    n: int,
    newest: bool,
    before: int | None = None,
) -> int | None:
    """Start time of the version's `n`-th newest (or oldest) request, among those that
    started before `before` when given; None if it has fewer."""
    column = RequestModel.start_time_unix_nano
    query = (
        select(column)
        .where(_model_filter(project_id, name, version))
        .where(column < before if before is not None else true())
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
    """Everything the drift detectors read of the version's requests in `bounds`, in one
    read of the store."""
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
        # The projection as JSON text: parsed in one call for the whole window below.
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
        select(PlannerDecision.trace_id, *(getattr(PlannerDecision, c) for c in DECISION_COLUMNS))
        .join(
            RequestModel,
            and_(
                RequestModel.project_id == PlannerDecision.project_id,
                RequestModel.trace_id == PlannerDecision.trace_id,
            ),
        )
        .where(in_window, PlannerDecision.project_id == project_id)
    )
    with read_connection(engine) as conn, _no_cyclic_gc():
        request_rows = _fetch(conn, requests)
        trace_ids = [r[0] for r in request_rows]
        index = {t: i for i, t in enumerate(trace_ids)}
        parsed = orjson.loads("[" + ",".join(r[1] or "null" for r in request_rows) + "]")
        del request_rows
        # One row per request even when none records a feature (pandas makes no rows of
        # empty records), so a window's parts stay aligned with `trace_ids`.
        records = [f if isinstance(f, dict) else {} for f in parsed]
        features = (
            pd.DataFrame.from_records(records)
            if any(records)
            else pd.DataFrame(index=pd.RangeIndex(len(records)))
        )
        latent = _latent(_fetch(conn, states), index)
        found = [(index.get(row[0], -1), row) for row in _fetch(conn, decisions)]
        found = sorted((item for item in found if item[0] >= 0), key=lambda item: item[0])
        late = [row[0] for _, row in found if row[_N_CANDIDATES] is None]
        if late:
            summaries = _summarise_late(conn, project_id, late)
            found = [(owner, _with_summary(row, summaries)) for owner, row in found]
    owners = np.fromiter((owner for owner, _ in found), dtype=np.int64, count=len(found))
    columns = decision_columns([row for _, row in found])
    return Window(bounds, trace_ids, features, latent, columns, owners)


def decision_columns(rows: Sequence[tuple[Any, ...]]) -> DecisionSample:
    """Decision rows (`_DECISION_KEYS`) as the decision-drift test takes them. The chosen
    action's category is its label up to the first `@` (`room-07@2026-11-24T15:00` is
    `room-07`): labels name a choice and its parameters, and the distribution of parameters
    is the inputs' business."""
    at = {key: i for i, key in enumerate(_DECISION_KEYS)}

    def numbers(key: str) -> np.ndarray:
        i = at[key]
        return np.array([np.nan if r[i] is None else float(r[i]) for r in rows], dtype=np.float64)

    chosen = at["chosen"]
    return DecisionSample(
        chosen=[(r[chosen] or "(none)").split("@", 1)[0] for r in rows],
        score=numbers("chosen_score"),
        confidence=numbers("confidence"),
        margin=numbers("margin"),
        entropy=numbers("entropy"),
        constraints_bound=np.array([bool(r[at["constraints_bound"]]) for r in rows], dtype=bool),
    )


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector paused: a window is millions of new lists, dicts and
    floats, none in a cycle, and each allocation burst would set off full collections that
    walk every object the process holds (a third of the read in a long-running service)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _fetch(conn: Connection, query: ClauseElement) -> list[tuple[Any, ...]]:
    """All rows of `query` as plain tuples, from the DBAPI cursor: a window is hundreds of
    thousands of rows, and building a `Row` for each cost a third of the read."""
    compiled = query.compile(dialect=conn.dialect)
    assert isinstance(compiled, SQLCompiler)
    params = compiled.construct_params()
    args: Any = (
        tuple(params[name] for name in compiled.positiontup or ())
        if compiled.positional
        else params
    )
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _latent(
    rows: list[tuple[Any, ...]], index: dict[str, int]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per layer, one mean projection per request (see the module docstring), from
    `(trace_id, layer, projection JSON)` rows."""
    if not rows:
        return {}
    trace_col, layer_col, projection_col = zip(*rows, strict=True)
    owners = np.fromiter((index.get(t, -1) for t in trace_col), dtype=np.int64, count=len(rows))
    vectors = orjson.loads("[" + ",".join(p or "null" for p in projection_col) + "]")
    layers = np.asarray(layer_col, dtype=object)
    latent = {}
    for layer in sorted(set(layer_col)):
        keep = np.flatnonzero((layers == layer) & (owners >= 0))
        picked = [vectors[i] for i in keep]
        usable = [j for j, v in enumerate(picked) if isinstance(v, list) and v]
        if not usable:
            continue
        if len(usable) < len(picked):
            keep, picked = keep[usable], [picked[j] for j in usable]
        latent[layer] = _mean_per_request(owners[keep], picked)
    return latent


def _mean_per_request(
    owners: np.ndarray, vectors: list[list[float]]
) -> tuple[np.ndarray, np.ndarray]:
    """One vector per request: the mean of its steps' projections, vectorised."""
    widths = np.fromiter((len(v) for v in vectors), dtype=np.int64, count=len(vectors))
    common = int(np.bincount(widths).argmax())
    if (widths != common).any():
        # A projection width changed mid-window (a new SDK setting): rows of another width
        # cannot be compared with these; the most common width wins.
        kept = np.flatnonzero(widths == common)
        owners = owners[kept]
        vectors = [vectors[i] for i in kept]
    rows = np.asarray(vectors, dtype=np.float64)
    unique, position = np.unique(owners, return_inverse=True)
    sums = np.zeros((len(unique), common))
    np.add.at(sums, position, rows)
    counts = np.bincount(position, minlength=len(unique)).astype(np.float64)
    return (sums / counts[:, None]).astype(np.float32), unique


def _summarise_late(conn: Any, project_id: int, trace_ids: list[str]) -> dict[str, Any]:
    """Decisions stored before summaries were computed at ingest: summarised here from the
    stored candidates, by trace id."""
    return {
        row.trace_id: summarise(row.candidates or [], row.chosen)
        for row in conn.execute(
            select(PlannerDecision.trace_id, PlannerDecision.chosen, PlannerDecision.candidates)
            .where(PlannerDecision.project_id == project_id)
            .where(PlannerDecision.trace_id.in_(set(trace_ids)))
        )
    }


def _with_summary(row: tuple[Any, ...], summaries: dict[str, Any]) -> tuple[Any, ...]:
    summary = summaries.get(row[0])
    if summary is None or row[_N_CANDIDATES] is not None:
        return row
    return tuple(summary.get(key, value) for key, value in zip(_DECISION_KEYS, row, strict=True))
