"""Shadow runs as stored (`shadow_runs`): the runs of one live request, and the agreement of
shadow and live decisions in an experiment.

A shadow run's own states and decisions are in world_model_states / planner_decisions under
its own trace id, which joins no `requests` row: request-based reads never see them. Its
`chosen` is filled at ingest from the decision sent with it; for a run whose decision came in
another batch it is taken here from planner_decisions (its trace's last decision).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, Field
from sqlalchemy import Connection, select

from app.errors import NotFound
from app.store.tables import PlannerDecision, Request, ShadowRun

_CHUNK = 500  # trace ids per IN (...) list


class ShadowRunOut(BaseModel):
    """One shadow run of a live request."""

    shadow_trace_id: str = Field(description="The shadow run's own trace (GET /v1/traces/{id})")
    request_id: str = Field(description="The live request it shadowed")
    experiment: str | None
    arm: str | None
    models: dict[str, Any] = Field(description="Model version per stage role, as it ran")
    chosen: str | None = Field(description="The shadow's planner decision (chosen action)")
    live_chosen: str | None = Field(description="The live request's chosen action")
    agrees: bool | None = Field(description="chosen == live_chosen; null when either is missing")
    outcome: str | None
    status: str
    duration_ms: float
    start_time_unix_nano: int


class ShadowRuns(BaseModel):
    request_id: str
    items: list[ShadowRunOut]


class Disagreement(NamedTuple):
    request_trace_id: str
    shadow_trace_id: str
    arm: str | None
    live_chosen: str
    shadow_chosen: str
    start_time_unix_nano: int


class Agreement(NamedTuple):
    """Of a shadow arm's `runs`, those whose decision matches the live one (`agree`) of those
    where both decided (`total`), and the others (at most `limit` of them, newest first)."""

    agree: int
    total: int
    disagreements: list[Disagreement]
    runs: int = 0


def shadow_runs_for(conn: Connection, project_id: int, request_trace_id: str) -> ShadowRuns:
    """The shadow runs of one live request (404 when the project has no such request)."""
    trace_id = request_trace_id.lower()
    found = conn.execute(
        select(Request.id).where(Request.project_id == project_id, Request.trace_id == trace_id)
    ).first()
    if found is None:
        raise NotFound(f"no request {request_trace_id!r} in this project")
    rows = list(
        conn.execute(
            select(*ShadowRun.__table__.c)
            .where(ShadowRun.project_id == project_id, ShadowRun.request_trace_id == trace_id)
            .order_by(ShadowRun.start_time_unix_nano, ShadowRun.trace_id)
        )
    )
    chosen = _last_chosen(
        conn, project_id, [trace_id, *(r.trace_id for r in rows if r.chosen is None)]
    )
    live = chosen.get(trace_id)
    items = []
    for row in rows:
        mine = row.chosen or chosen.get(row.trace_id)
        items.append(
            ShadowRunOut(
                shadow_trace_id=row.trace_id,
                request_id=row.request_trace_id,
                experiment=row.experiment,
                arm=row.arm,
                models=row.models or {},
                chosen=mine,
                live_chosen=live,
                agrees=None if mine is None or live is None else mine == live,
                outcome=row.outcome,
                status=row.status,
                duration_ms=row.duration_ms,
                start_time_unix_nano=row.start_time_unix_nano,
            )
        )
    return ShadowRuns(request_id=trace_id, items=items)


def agreement(
    conn: Connection,
    project_id: int,
    experiment: str,
    since: int | datetime | None = None,
    until: int | datetime | None = None,
    *,
    limit: int = 100,
) -> Agreement:
    """Live/shadow decision agreement of all `experiment`'s shadow runs started in
    [`since`, `until`) (Unix nanoseconds or datetimes); see `agreement_by_arm`."""
    arms = agreement_by_arm(conn, project_id, experiment, since, until, limit=limit)
    newest = sorted(
        (d for a in arms.values() for d in a.disagreements), key=lambda d: d[5], reverse=True
    )
    return Agreement(
        sum(a.agree for a in arms.values()),
        sum(a.total for a in arms.values()),
        newest[:limit],
        sum(a.runs for a in arms.values()),
    )


def agreement_by_arm(
    conn: Connection,
    project_id: int,
    experiment: str,
    since: int | datetime | None = None,
    until: int | datetime | None = None,
    *,
    limit: int = 100,
) -> dict[str, Agreement]:
    """Per shadow arm of `experiment`, the agreement of its runs started in [`since`,
    `until`). A run counts in `total` only when the live request and the shadow both chose an
    action (a shadow's answer that chose none, e.g. a clarifying question, says nothing about
    which action it would take); the one rule the API, the KPIs and the dashboard share."""
    query = select(
        ShadowRun.trace_id,
        ShadowRun.request_trace_id,
        ShadowRun.arm,
        ShadowRun.chosen,
        ShadowRun.start_time_unix_nano,
    ).where(ShadowRun.project_id == project_id, ShadowRun.experiment == experiment)
    if since is not None:
        query = query.where(ShadowRun.start_time_unix_nano >= _nanos(since))
    if until is not None:
        query = query.where(ShadowRun.start_time_unix_nano < _nanos(until))
    runs = list(conn.execute(query.order_by(ShadowRun.start_time_unix_nano.desc())))
    wanted = {r.request_trace_id for r in runs} | {r.trace_id for r in runs if r.chosen is None}
    chosen = _last_chosen(conn, project_id, wanted)
    counts: dict[str, list[int]] = {}  # arm -> [runs, agree, total]
    found: dict[str, list[Disagreement]] = {}
    for run in runs:
        arm = str(run.arm)
        tally = counts.setdefault(arm, [0, 0, 0])
        tally[0] += 1
        mine = run.chosen or chosen.get(run.trace_id)
        live = chosen.get(run.request_trace_id)
        if mine is None or live is None:
            continue
        tally[2] += 1
        if mine == live:
            tally[1] += 1
        elif len(found.setdefault(arm, [])) < limit:
            found[arm].append(
                Disagreement(
                    run.request_trace_id, run.trace_id, run.arm, live, mine,
                    run.start_time_unix_nano,
                )
            )  # fmt: skip
    return {
        arm: Agreement(agree, total, found.get(arm, []), n)
        for arm, (n, agree, total) in sorted(counts.items())
    }


def _last_chosen(conn: Connection, project_id: int, trace_ids: Iterable[str]) -> dict[str, str]:
    """Per trace, the chosen action of its last planner decision that chose one."""
    ids = sorted(set(trace_ids))
    latest: dict[str, tuple[int, str]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = conn.execute(
            select(PlannerDecision.trace_id, PlannerDecision.time_unix_nano, PlannerDecision.chosen)
            .where(
                PlannerDecision.project_id == project_id,
                PlannerDecision.trace_id.in_(chunk),
                PlannerDecision.chosen.is_not(None),
            )
        )
        for trace_id, when, chosen in rows:
            seen = latest.get(trace_id)
            if chosen is not None and (seen is None or when >= seen[0]):
                latest[trace_id] = (when, chosen)
    return {trace_id: chosen for trace_id, (_, chosen) in latest.items()}


def _nanos(value: int | datetime) -> int:
    return value if isinstance(value, int) else int(value.timestamp() * 1_000_000_000)
