"""Writing one export request: every row in one transaction, acknowledged only once committed.

Idempotency is per project on (trace_id, span_id): a span already stored with the same body
is a harmless resend; with another body it is a conflict, counted and never an overwrite.
Only spans inserted by this batch are normalised, so a conflicting resend cannot add typed
rows either. Every table is written in one fixed order and every batch in key order, so
concurrent transactions on PostgreSQL always take their locks in the same order and cannot
deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table, case, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from app.db import write_transaction
from app.ingest.normalise import Normalised, ParsedBatch, normalise
from app.models import (
    ModelVersion,
    PlannerDecision,
    PolicyEvaluation,
    Request,
    RequestModel,
    Span,
    WorldModelState,
)

SPANS: Table = Span.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    conflicts: int
    invalid: int
    requests: int
    first_rejection: str | None = None

    @property
    def rejected(self) -> int:
        return self.conflicts + self.invalid


def dialect_insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which knows ON CONFLICT (SQLite and PostgreSQL alike)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def store_batch(engine: Engine, project_id: int, batch: ParsedBatch) -> IngestResult:
    """Store a parsed batch for a project in one transaction and say what happened to it."""
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    in_batch_repeats: list[dict[str, Any]] = []
    for row in batch.spans:
        row["project_id"] = project_id
        key = _key(row)
        if key in unique:
            in_batch_repeats.append(row)
        else:
            unique[key] = row
    rows = [unique[key] for key in sorted(unique)]

    with write_transaction(engine) as conn:
        inserted = _insert_spans(conn, rows)
        stored = _stored_digests(conn, project_id, [r for r in rows if _key(r) not in inserted])
        duplicates = conflicts = 0
        for row in [*rows, *in_batch_repeats]:
            key = _key(row)
            if key in inserted:
                if row is unique[key]:
                    continue
                first = unique[key]["body_digest"]
            else:
                first = stored.get(key, row["body_digest"])
            if first == row["body_digest"]:
                duplicates += 1
            else:
                conflicts += 1
        typed = normalise(row for row in rows if _key(row) in inserted)
        _insert_typed(conn, project_id, typed)

    return IngestResult(
        accepted=len(inserted),
        duplicates=duplicates,
        conflicts=conflicts,
        invalid=len(batch.rejections),
        requests=len(typed.requests),
        first_rejection=batch.rejections[0] if batch.rejections else None,
    )


def _key(row: dict[str, Any]) -> tuple[str, str]:
    return row["trace_id"], row["span_id"]


def _insert_spans(conn: Connection, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    if not rows:
        return set()
    stmt = (
        dialect_insert(conn, SPANS)
        .on_conflict_do_nothing(index_elements=["project_id", "trace_id", "span_id"])
        .returning(SPANS.c.trace_id, SPANS.c.span_id)
    )
    return {(t, s) for t, s in conn.execute(stmt, rows)}


def _stored_digests(
    conn: Connection, project_id: int, rows: list[dict[str, Any]]
) -> dict[tuple[str, str], bytes]:
    if not rows:
        return {}
    keys = [_key(row) for row in rows]
    query = select(SPANS.c.trace_id, SPANS.c.span_id, SPANS.c.body_digest).where(
        SPANS.c.project_id == project_id,
        tuple_(SPANS.c.trace_id, SPANS.c.span_id).in_(keys),
    )
    return {(t, s): bytes(d) for t, s, d in conn.execute(query)}


def _insert_typed(conn: Connection, project_id: int, typed: Normalised) -> None:
    for model, rows, key in (
        (Request, typed.requests, ("project_id", "trace_id")),
        (RequestModel, typed.request_models, ("project_id", "trace_id", "role")),
        (WorldModelState, typed.states, ("project_id", "trace_id", "span_id", "seq")),
        (PlannerDecision, typed.decisions, ("project_id", "trace_id", "span_id")),
        (PolicyEvaluation, typed.policy_evaluations, ("project_id", "trace_id", "span_id", "seq")),
    ):
        if not rows:
            continue
        for row in rows:
            row["project_id"] = project_id
        rows.sort(key=lambda r: tuple(r[k] for k in key[1:]))
        table: Table = model.__table__  # type: ignore[assignment]
        conn.execute(dialect_insert(conn, table).on_conflict_do_nothing(index_elements=key), rows)
    # Last: an upsert holds a row lock on PostgreSQL until commit, so it is held briefly.
    _upsert_models(conn, project_id, typed.models)


def _upsert_models(
    conn: Connection, project_id: int, seen: dict[tuple[str, str], list[Any]]
) -> None:
    if not seen:
        return
    table: Table = ModelVersion.__table__  # type: ignore[assignment]
    rows = [
        {
            "project_id": project_id,
            "name": name,
            "version": version,
            "role": role,
            "status": "unresolved",
            "first_seen_unix_nano": first,
            "last_seen_unix_nano": last,
            "aliases": [],
            "tags": {},
            "lineage": {},
        }
        for (name, version), (role, first, last) in sorted(seen.items())
    ]
    stmt = dialect_insert(conn, table)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["project_id", "name", "version"],
        set_={
            "first_seen_unix_nano": case(
                (
                    excluded.first_seen_unix_nano < table.c.first_seen_unix_nano,
                    excluded.first_seen_unix_nano,
                ),
                else_=table.c.first_seen_unix_nano,
            ),
            "last_seen_unix_nano": case(
                (
                    excluded.last_seen_unix_nano > table.c.last_seen_unix_nano,
                    excluded.last_seen_unix_nano,
                ),
                else_=table.c.last_seen_unix_nano,
            ),
        },
    )
    conn.execute(stmt, rows)
