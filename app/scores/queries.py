"""Reads of scores: the scores of one request, and which requests count as corrected or
escalated (the KPIs' `correction_rate` and `escalation_rate`, docs/scores.md).

A request is a **correction** when it has a score with a correction (the action a person
chose instead), or a `human` or `review` score named `correction` whose value is not
false/0, or its review was decided `rejected`. It is an **escalation** when it joined the
review queue (whatever was decided), or its outcome is one of the project's
`escalation_outcomes` (e.g. `handed_over`). Review decisions count without any score
written for them: these reads look at the review queue itself.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Text, cast, or_, select

from app.errors import NotFound
from app.scores.read_models import ScoreOut
from app.scores.recording import known_requests
from app.scores.validation import CORRECTION, REVIEW, typed_value
from app.store.engine import read_connection
from app.store.tables import Request, Review, Score

_CHUNK = 500
# The sources whose score named `correction` says a person overrode the decision.
_CORRECTING_SOURCES = ("human", REVIEW)


def list_scores(engine: Engine, project_id: int, request_id: str) -> list[ScoreOut]:
    """The scores of a request of the project, oldest first; 404 if there is no such request."""
    trace_id = request_id.strip().lower()
    with read_connection(engine) as conn:
        if not known_requests(conn, project_id, [trace_id]):
            raise NotFound(f"no request {request_id} in this project")
        rows = conn.execute(
            select(Score)
            .where(Score.project_id == project_id, Score.trace_id == trace_id)
            .order_by(Score.created_at, Score.id)
        )
        return [_out(r) for r in rows]


def _out(r: Any) -> ScoreOut:
    return ScoreOut(
        key=r.score_key, request_id=r.trace_id, name=r.name, data_type=r.data_type,
        value=typed_value(r.data_type, r.value, r.string_value), source=r.source,
        author=r.author, comment=r.comment, correction=r.correction, created_at=r.created_at,
    )  # fmt: skip


def corrects() -> ColumnElement[bool]:
    """The scores that correct their request: one carrying the action a person chose instead,
    or a human (or review-queue) score named `correction` that is not false. A filter for any
    query over `scores`, so every reader counts corrections the same way."""
    # A JSON column holds an absent correction as SQL NULL or as JSON `null`.
    has_correction = Score.correction.is_not(None) & (cast(Score.correction, Text) != "null")
    named = (
        (Score.name == CORRECTION)
        & Score.source.in_(_CORRECTING_SOURCES)
        # A `correction` score of false (or 0) says the decision stood.
        & or_(Score.value.is_(None), Score.value != 0)
    )
    return or_(has_correction, named)


def correction_trace_ids(conn: Connection, project_id: int, trace_ids: Iterable[str]) -> set[str]:
    """Which of these requests a person corrected (see the module's docstring).

    >>> correction_trace_ids(conn, 1, ["4bf92f3577b34da6a3ce929d0e0e4736"])  # doctest: +SKIP
    {'4bf92f3577b34da6a3ce929d0e0e4736'}
    """
    found: set[str] = set()
    for chunk in _chunks(trace_ids):
        found.update(
            conn.execute(
                select(Score.trace_id).where(
                    Score.project_id == project_id, Score.trace_id.in_(chunk), corrects()
                )
            ).scalars()
        )
        found.update(
            conn.execute(
                select(Review.trace_id).where(
                    Review.project_id == project_id,
                    Review.trace_id.in_(chunk),
                    Review.status == "rejected",
                )
            ).scalars()
        )
    return found


def escalation_trace_ids(
    conn: Connection,
    project_id: int,
    trace_ids: Iterable[str],
    escalation_outcomes: Collection[str],
) -> set[str]:
    """Which of these requests were handed to a person: parked in the review queue, or
    answered with one of `escalation_outcomes`.

    >>> escalation_trace_ids(conn, 1, ids, ["handed_over"])  # doctest: +SKIP
    {'4bf92f3577b34da6a3ce929d0e0e4736'}
    """
    outcomes = sorted(set(escalation_outcomes))
    found: set[str] = set()
    for chunk in _chunks(trace_ids):
        found.update(
            conn.execute(
                select(Review.trace_id).where(
                    Review.project_id == project_id, Review.trace_id.in_(chunk)
                )
            ).scalars()
        )
        if outcomes:
            found.update(
                conn.execute(
                    select(Request.trace_id).where(
                        Request.project_id == project_id,
                        Request.trace_id.in_(chunk),
                        Request.outcome.in_(outcomes),
                    )
                ).scalars()
            )
    return found


def _chunks(trace_ids: Iterable[str]) -> Iterator[list[str]]:
    ids = sorted(set(trace_ids))
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]
