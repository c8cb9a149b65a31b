"""Writing one export request: every row in one transaction, acknowledged only once committed.

Idempotency is per project on (trace_id, span_id): a span already stored with the same body
is a harmless resend; with another body it is a conflict, counted and never an overwrite, and
the typed rows it would have made are dropped too. Every table is written in one fixed order
and every batch in key order, so concurrent transactions on PostgreSQL take their locks in the
same order and cannot deadlock.

This is the hot path of the service. The two large tables (spans and world-model states,
hundreds of rows a batch) skip SQLAlchemy, with JSON serialised beforehand. On PostgreSQL
they are COPYed straight into their tables, as new (a batch is sent once, the common case);
when one of them is stored already (a resend, a conflict, or another transaction storing it
first) the COPY fails and aborts the transaction, and the batch is written again through
COPY into a staging table and one INSERT ... SELECT ... ON CONFLICT DO NOTHING
(app/store/bulk.py). On SQLite through the DB-API driver's `executemany` of the same INSERT.
The small typed tables go through SQLAlchemy's insert on SQLite and psycopg's pipelined
`executemany` on PostgreSQL (`insert_ignore_rows`).
Everything that needs no lock is computed before the write transaction begins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Table, case, select, tuple_, update

from app.audit import erasure
from app.audit.erasure import Vault
from app.experiments import settings as experiment_settings
from app.ingest import genai
from app.ingest.ledger_events import record_requests
from app.ingest.normalise import Normalised, ParsedBatch, normalise, see_model
from app.scores.recording import record_span_scores
from app.store.bulk import (
    AlreadyStored,
    copy_insert,
    copy_insert_ignore,
    copy_rows,
    insert_ignore_rows,
)
from app.store.dialect import (
    DriverSQL,
    driver_insert_on_conflict,
    insert_on_conflict,
    is_postgresql,
)
from app.store.engine import write_transaction
from app.store.tables import (
    LlmCall,
    ModelVersion,
    PlannerDecision,
    PolicyEvaluation,
    Request,
    RequestExperiment,
    RequestModel,
    Retrieval,
    Review,
    ShadowRun,
    Span,
)

SPANS: Table = Span.__table__  # type: ignore[assignment]
SPAN_KEY = ("project_id", "trace_id", "span_id")
SPAN_COLUMNS = (
    "project_id", "trace_id", "span_id", "parent_span_id", "name", "kind",
    "start_time_unix_nano", "end_time_unix_nano", "status_code", "status_message",
    "service_name", "scope_name", "attributes", "events", "links", "resource", "body_digest",
)  # fmt: skip
# Rows numbered within their span (states, policy evaluations) are keyed by their number.
STATE_KEY = ("project_id", "trace_id", "span_id", "seq")
# Rows made once per span (decisions, language-model calls).
SPAN_ROW_KEY = ("project_id", "trace_id", "span_id")
# How stale a model version's `last_seen_unix_nano` may be: one second.
LAST_SEEN_RESOLUTION_NS = 1_000_000_000
STATE_COLUMNS = (
    "project_id", "trace_id", "span_id", "seq", "step", "layer", "mean", "std", "min", "max",
    "l2_norm", "projection", "tensor_sha256", "time_unix_nano",
)  # fmt: skip
INSERT_SPANS = driver_insert_on_conflict("spans", SPAN_COLUMNS, SPAN_KEY)
INSERT_STATES = driver_insert_on_conflict("world_model_states", STATE_COLUMNS, STATE_KEY)


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    conflicts: int
    invalid: int
    requests: int
    first_rejection: str | None = None
    # Score spans stored as spans but refused as scores (app/scores/recording.py).
    refused_scores: int = 0
    first_refused_score: str | None = None

    @property
    def rejected(self) -> int:
        return self.conflicts + self.invalid + self.refused_scores


def store_batch(engine: Engine, vault: Vault, project_id: int, batch: ParsedBatch) -> IngestResult:
    """Store a parsed batch for a project in one transaction and say what happened to it.

    Retained raw inputs are sealed with `vault` (app/audit/erasure.py)."""
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    repeats: list[dict[str, Any]] = []
    for row in batch.spans:
        key = (row["trace_id"], row["span_id"])
        if key in unique:
            repeats.append(row)
        else:
            unique[key] = row
    rows = [unique[key] for key in sorted(unique)]
    # A retained raw input is never stored in the clear: it leaves the span here and is
    # sealed under its subject's key by the ledger step below.
    inputs = erasure.take_inputs(rows)
    typed = normalise(rows)
    span_params = [_span_params(project_id, row) for row in rows]
    try:
        written = _write(engine, vault, project_id, rows, repeats, unique, typed, span_params,
                         inputs, direct=not repeats)  # fmt: skip
    except AlreadyStored:
        # Only the direct COPY raises it: one of these spans is stored already (a resend),
        # or another transaction stored it first. Nothing of the batch was kept; the
        # staging path sorts stored from new.
        written = _write(engine, vault, project_id, rows, repeats, unique, typed, span_params,
                         inputs, direct=False)  # fmt: skip
    inserted, conflicts, typed, refused = written

    return IngestResult(
        accepted=inserted,
        duplicates=len(batch.spans) - inserted - conflicts,
        conflicts=conflicts,
        invalid=len(batch.rejections),
        requests=len(typed.requests),
        first_rejection=batch.rejections[0] if batch.rejections else None,
        refused_scores=len(refused),
        first_refused_score=refused[0] if refused else None,
    )


def _write(
    engine: Engine,
    vault: Vault,
    project_id: int,
    rows: list[dict[str, Any]],
    repeats: list[dict[str, Any]],
    unique: dict[tuple[str, str], dict[str, Any]],
    typed: Normalised,
    span_params: list[tuple[Any, ...]],
    inputs: dict[str, str],
    direct: bool,
) -> tuple[int, int, Normalised, list[str]]:
    """The batch's one transaction: (spans inserted, conflicts, the typed rows written, refused
    scores). With `direct`, on PostgreSQL, spans and states are COPYed straight into their
    tables, as new (`copy_insert`); if one is stored already the transaction aborts with
    `AlreadyStored` and the caller writes the batch again without `direct`."""
    losers: set[int] = set()
    with write_transaction(engine) as conn:
        direct = direct and is_postgresql(conn)
        if direct:
            inserted = copy_insert(conn, "spans", SPAN_COLUMNS, span_params)
        else:
            inserted = _insert_ignore(
                conn, INSERT_SPANS, span_params, "spans", SPAN_COLUMNS, SPAN_KEY
            )
        conflicts = 0
        if inserted < len(rows) or repeats:
            # Some ids were stored before (or repeat within the batch): what the database
            # holds now for each id is the first body; any other body is a conflict.
            stored = _stored_digests(conn, project_id, list(unique))
            losers = {
                id(row)
                for row in [*rows, *repeats]
                if stored.get((row["trace_id"], row["span_id"])) != row["body_digest"]
            }
            conflicts = len(losers)
            if losers:
                typed = normalise(row for row in rows if id(row) not in losers)
        new_requests = _insert_typed(conn, project_id, typed, direct)
        # Last, and only for requests this batch stored: one ledger event each. On
        # PostgreSQL it locks the project's ledger head until commit, so it comes last.
        batch_spans: dict[str, dict[str, bytes]] = {}
        for row in rows:
            if id(row) not in losers:
                batch_spans.setdefault(row["trace_id"], {})[row["span_id"]] = row["body_digest"]
        record_requests(conn, vault, project_id, new_requests, typed, batch_spans, inputs)
        # Only batches with score spans: they read the requests and configs they name.
        refused = record_span_scores(conn, project_id, typed.scores) if typed.scores else []

    return inserted, conflicts, typed, refused


def _span_params(project_id: int, row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        project_id, row["trace_id"], row["span_id"], row["parent_span_id"], row["name"],
        row["kind"], row["start_time_unix_nano"], row["end_time_unix_nano"], row["status_code"],
        row["status_message"], row["service_name"], row["scope_name"],
        orjson.dumps(row["attributes"]).decode(), row["events_json"], row["links_json"],
        row["resource_json"], row["body_digest"],
    )  # fmt: skip


def _state_params(project_id: int, s: dict[str, Any]) -> tuple[Any, ...]:
    return (
        project_id, s["trace_id"], s["span_id"], s["seq"], s["step"], s["layer"], s["mean"],
        s["std"], s["min"], s["max"], s["l2_norm"], orjson.dumps(s["projection"]).decode(),
        s["tensor_sha256"], s["time_unix_nano"],
    )  # fmt: skip


def _insert_ignore(
    conn: Connection,
    insert: DriverSQL,
    params: list[tuple[Any, ...]],
    table: str,
    columns: tuple[str, ...],
    key: tuple[str, ...],
) -> int:
    """INSERT … ON CONFLICT DO NOTHING of `params` (in key order); returns how many rows
    were new. COPY through a staging table on PostgreSQL, `executemany` on SQLite."""
    if not params:
        return 0
    if is_postgresql(conn):
        return copy_insert_ignore(conn, table, columns, key, params)
    return int(conn.exec_driver_sql(insert.text(conn), params).rowcount)


def _stored_digests(
    conn: Connection, project_id: int, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], bytes]:
    query = select(SPANS.c.trace_id, SPANS.c.span_id, SPANS.c.body_digest).where(
        SPANS.c.project_id == project_id,
        tuple_(SPANS.c.trace_id, SPANS.c.span_id).in_(keys),
    )
    return {(t, s): bytes(d) for t, s, d in conn.execute(query)}


def _insert_typed(
    conn: Connection, project_id: int, typed: Normalised, direct: bool = False
) -> list[str]:
    """Insert the typed rows; returns the trace ids of the requests that were new. With
    `direct`, the states are COPYed straight in: their spans were all new."""
    now = datetime.now(UTC)
    for row in typed.requests:
        row["ingested_at"] = now
    new_requests = _insert_rows(
        conn, Request, project_id, typed.requests, ("project_id", "trace_id"), True, direct
    )
    # A request's models and experiments come from its root span, as the request does.
    _insert_rows(
        conn, RequestModel, project_id, typed.request_models,
        ("project_id", "trace_id", "role"), False, direct,
    )  # fmt: skip
    _insert_rows(
        conn, RequestExperiment, project_id, typed.request_experiments,
        ("project_id", "trace_id", "experiment"), False, direct,
    )  # fmt: skip
    if typed.llm_calls:
        _price(conn, project_id, typed.llm_calls)
        _insert_rows(conn, LlmCall, project_id, typed.llm_calls, SPAN_ROW_KEY, False, direct)
    _insert_rows(conn, Retrieval, project_id, typed.retrievals, STATE_KEY, False, direct)
    _late_stages(conn, project_id, typed, new_requests)
    typed.states.sort(key=lambda r: (r["trace_id"], r["span_id"], r["seq"]))
    states = [_state_params(project_id, s) for s in typed.states]
    if direct:
        copy_insert(conn, "world_model_states", STATE_COLUMNS, states)
    else:
        _insert_ignore(conn, INSERT_STATES, states, "world_model_states", STATE_COLUMNS, STATE_KEY)
    _insert_rows(conn, PlannerDecision, project_id, typed.decisions, SPAN_ROW_KEY, False, direct)
    _insert_rows(
        conn, PolicyEvaluation, project_id, typed.policy_evaluations, STATE_KEY, False, direct
    )
    _insert_rows(conn, Review, project_id, typed.reviews, ("project_id", "trace_id"))
    _insert_rows(conn, ShadowRun, project_id, typed.shadow_runs, ("project_id", "trace_id"))
    # Last: an upsert holds a row lock on PostgreSQL until commit, so it is held briefly.
    _upsert_models(conn, project_id, typed.models)
    return new_requests


def _price(conn: Connection, project_id: int, calls: list[dict[str, Any]]) -> None:
    """Each call's cost by the project's price table (the cost KPI's), as it stands now."""
    if not any(c["input_tokens"] is not None or c["output_tokens"] is not None for c in calls):
        return
    config = experiment_settings.read(conn, project_id)
    for call in calls:
        price = experiment_settings.price_of(config, call["response_model"], call["request_model"])
        if price is not None and (
            call["input_tokens"] is not None or call["output_tokens"] is not None
        ):
            call["cost"] = price.cost(call["input_tokens"] or 0, call["output_tokens"] or 0)


def _late_stages(
    conn: Connection, project_id: int, typed: Normalised, new_requests: list[str]
) -> None:
    """A new request without an `llm` stage takes its trace's first language-model call
    stored in an earlier batch (normalise's `_llm_stages` joins those of one batch), in its
    ledger event too (its `models` are changed in place). A call that arrives after its
    request does not change it: the request's ledger event, written with it, fixed its
    models."""
    new = set(new_requests)
    requests = {r["trace_id"]: r for r in typed.requests}
    waiting = sorted(
        t for t, r in requests.items()
        if t in new and (genai.LLM_ROLE not in r["models"] or t in typed.late_stages)
    )  # fmt: skip
    found: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = {}
    if waiting:
        query = (
            select(LlmCall.trace_id, LlmCall.request_model, LlmCall.response_model)
            .where(LlmCall.project_id == project_id, LlmCall.trace_id.in_(waiting),
                   LlmCall.stage.is_(True))
            .order_by(LlmCall.trace_id, LlmCall.start_time_unix_nano)
        )  # fmt: skip
        for trace_id, request_model, response_model in conn.execute(query):
            if trace_id in found:
                continue
            request = requests[trace_id]
            call = {"request_model": request_model, "response_model": response_model}
            found[trace_id] = (request["models"], request["start_time_unix_nano"], call)
            typed.late_stages.add(trace_id)
    stages = []
    for trace_id, (models, start, call) in sorted(found.items()):
        name, version = genai.stage_model(call)
        models[genai.LLM_ROLE] = {"name": name, "version": version}
        conn.execute(
            update(Request)
            .where(Request.project_id == project_id, Request.trace_id == trace_id)
            .values(models=models)
        )
        stages.append({"trace_id": trace_id, "role": genai.LLM_ROLE, "model_name": name,
                       "model_version": version, "start_time_unix_nano": start})  # fmt: skip
        see_model(typed.models, name, version, genai.LLM_ROLE, start)
    _insert_rows(
        conn, RequestModel, project_id, stages, ("project_id", "trace_id", "role"), False, False
    )


def _insert_rows(
    conn: Connection,
    model: Any,
    project_id: int,
    rows: list[dict[str, Any]],
    key: tuple[str, ...],
    returning: bool = False,
    direct: bool = False,
) -> list[str]:
    """INSERT ... ON CONFLICT DO NOTHING; with `returning`, the trace ids of the new rows.
    With `direct` (PostgreSQL, a batch whose spans were all new: rows keyed by a new span,
    or a request and its models and experiments by its new root span, are new too), COPYed
    straight in."""
    if not rows:
        return []
    for row in rows:
        row["project_id"] = project_id
    rows.sort(key=lambda r: tuple(r[k] for k in key[1:]))
    table: Table = model.__table__
    if direct:
        copy_rows(conn, table, rows)
        return [row["trace_id"] for row in rows] if returning else []
    if is_postgresql(conn):
        # A few dozen rows: pipelined executemany beats SQLAlchemy's multi-row VALUES here.
        return insert_ignore_rows(conn, table, key, rows, "trace_id" if returning else None)
    stmt = insert_on_conflict(conn, table, key)
    if returning:
        return list(conn.execute(stmt.returning(table.c.trace_id), rows).scalars())
    conn.execute(stmt, rows)
    return []


def _upsert_models(
    conn: Connection, project_id: int, seen: dict[tuple[str, str], list[Any]]
) -> None:
    if not seen:
        return
    table: Table = ModelVersion.__table__  # type: ignore[assignment]
    # Only rows that change by more than the resolution: a version's row is row-locked from
    # its upsert until commit, so upserting it every batch would queue concurrent batches
    # behind one another for no news (the dashboard and drift plans read it to the second).
    stored = {
        (name, version): (first, last)
        for name, version, first, last in conn.execute(
            select(
                table.c.name, table.c.version, table.c.first_seen_unix_nano,
                table.c.last_seen_unix_nano,
            ).where(
                table.c.project_id == project_id,
                tuple_(table.c.name, table.c.version).in_(sorted(seen)),
            )
        )
    }  # fmt: skip
    seen = {
        key: value
        for key, value in seen.items()
        if key not in stored
        or value[1] < stored[key][0]
        or value[2] > stored[key][1] + LAST_SEEN_RESOLUTION_NS
    }
    if not seen:
        return
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
    stmt = insert_on_conflict(
        conn,
        table,
        ["project_id", "name", "version"],
        set_=lambda excluded: {
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
