"""Storing scores: one through the API, or the score spans of an ingested batch. Each stored
score appends a `score.recorded` event to the project's ledger in the same transaction; a
score refused (unknown request, against its config) stores nothing and appends nothing.

The event's payload: `score_key`, `trace_id` (the scored request), `name`, `data_type`,
`value`, `source`, `author`, and the SHA-256 of the comment and of the correction's canonical
JSON (`comment_sha256`, `correction_sha256`, null when absent): free text stays out of the
append-only ledger, and an export's score rows can still be checked against it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, null, select

from app.audit import jcs, ledger
from app.errors import NotFound
from app.scores.configs import rules_for
from app.scores.read_models import ScoreOut
from app.scores.spans import SpanScore
from app.scores.validation import CheckedScore, InvalidScore, ScoreFields, check_score
from app.store.dialect import insert_on_conflict
from app.store.engine import write_transaction
from app.store.tables import Request, Score

SCORES: Table = Score.__table__  # type: ignore[assignment]
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class StoredScore:
    key: str
    trace_id: str
    score: CheckedScore
    created_at: datetime

    def out(self) -> ScoreOut:
        s = self.score
        return ScoreOut(
            key=self.key, request_id=self.trace_id, name=s.name, data_type=s.data_type,
            value=s.typed_value(), source=s.source, author=s.author, comment=s.comment,
            correction=s.correction, created_at=self.created_at,
        )  # fmt: skip


def record_score(engine: Engine, project_id: int, request_id: str, fields: ScoreFields) -> ScoreOut:
    """Store a score on a request of the project: 404 if the project has no such request,
    422 naming the field when it fails its config; then nothing is stored."""
    trace_id = request_id.strip().lower()
    with write_transaction(engine) as conn:
        if not known_requests(conn, project_id, [trace_id]):
            raise NotFound(f"no request {request_id} in this project")
        config = (
            rules_for(conn, project_id, [fields.name]).get(fields.name)
            if isinstance(fields.name, str)
            else None
        )
        checked = check_score(fields, config)
        stored = _insert(conn, project_id, f"api:{uuid.uuid4().hex}", trace_id, checked, None)
        assert stored is not None  # a fresh key cannot be stored already
        _append_events(conn, project_id, [stored])
    return stored.out()


def record_span_scores(conn: Connection, project_id: int, scores: Sequence[SpanScore]) -> list[str]:
    """Store the scores of a batch's score spans inside ingest's transaction; returns why
    each refused one was refused. A score stored already (the batch was sent again) is
    skipped before any check, so a config changed since cannot turn a resend into a refusal.
    """
    if not scores:
        return []
    unique = {s.key: s for s in scores}
    stored_keys = _stored_keys(conn, project_id, list(unique))
    pending = [unique[k] for k in sorted(unique) if k not in stored_keys]
    if not pending:
        return []
    known = known_requests(conn, project_id, [s.request_id for s in pending])
    rules = rules_for(conn, project_id, [s.fields.name for s in pending])
    refused: list[str] = []
    stored: list[StoredScore] = []
    for span in pending:
        if span.request_id not in known:
            refused.append(
                f"score {span.key}: request: no request {span.request_id!r} in this project"
            )
            continue
        name = span.fields.name
        try:
            checked = check_score(span.fields, rules.get(name) if isinstance(name, str) else None)
        except InvalidScore as exc:
            refused.append(f"score {span.key}: {exc.message}")
            continue
        at = _span_time(span.end_time_unix_nano)
        row = _insert(conn, project_id, span.key, span.request_id, checked, at)
        if row is not None:
            stored.append(row)
    _append_events(conn, project_id, stored)
    return refused


def known_requests(conn: Connection, project_id: int, trace_ids: Iterable[str]) -> set[str]:
    """Which of these trace ids are requests of the project."""
    wanted = sorted(set(trace_ids))
    found: set[str] = set()
    for i in range(0, len(wanted), _CHUNK):
        found.update(
            conn.execute(
                select(Request.trace_id).where(
                    Request.project_id == project_id,
                    Request.trace_id.in_(wanted[i : i + _CHUNK]),
                )
            ).scalars()
        )
    return found


def _stored_keys(conn: Connection, project_id: int, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(keys), _CHUNK):
        found.update(
            conn.execute(
                select(Score.score_key).where(
                    Score.project_id == project_id, Score.score_key.in_(keys[i : i + _CHUNK])
                )
            ).scalars()
        )
    return found


def _span_time(end_time_unix_nano: int) -> datetime:
    """When the score was given: its span's end, or now for a span without a time."""
    if end_time_unix_nano <= 0:
        return datetime.now(UTC)
    return datetime.fromtimestamp(end_time_unix_nano / 1e9, UTC)


def _insert(
    conn: Connection,
    project_id: int,
    key: str,
    trace_id: str,
    score: CheckedScore,
    created_at: datetime | None,
) -> StoredScore | None:
    """Insert one score; None if its key is stored already."""
    when = created_at or datetime.now(UTC)
    stmt = (
        insert_on_conflict(conn, SCORES, ["project_id", "score_key"])
        .values(
            project_id=project_id, trace_id=trace_id, score_key=key, name=score.name,
            data_type=score.data_type, value=score.value, string_value=score.string_value,
            source=score.source, author=score.author, comment=score.comment,
            # SQL NULL, not JSON null: "no correction" must read as NULL on both databases.
            correction=null() if score.correction is None else score.correction,
            created_at=when,
        )
        .returning(SCORES.c.id)
    )  # fmt: skip
    if conn.execute(stmt).first() is None:
        return None
    return StoredScore(key, trace_id, score, when)


def _digest(value: Any) -> str | None:
    if value is None:
        return None
    data = value.encode() if isinstance(value, str) else jcs.dumps(value)
    return hashlib.sha256(data).hexdigest()


def _append_events(conn: Connection, project_id: int, stored: list[StoredScore]) -> None:
    events = [
        (
            ledger.SCORE_RECORDED,
            {
                "score_key": s.key,
                "trace_id": s.trace_id,
                "name": s.score.name,
                "data_type": s.score.data_type,
                "value": s.score.typed_value(),
                "source": s.score.source,
                "author": s.score.author,
                "comment_sha256": _digest(s.score.comment),
                "correction_sha256": _digest(s.score.correction),
            },
        )
        for s in stored
    ]
    ledger.append_many(conn, project_id, None, events)
