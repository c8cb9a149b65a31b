"""Read side of the stored telemetry: requests, their details, and traces. Always per project."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, and_, or_, select

from app.db import read_connection
from app.errors import BadRequest, NotFound
from app.models import (
    PlannerDecision,
    PolicyEvaluation,
    Request,
    RequestModel,
    Span,
    WorldModelState,
)

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class RequestFilter:
    since: datetime | None = None
    until: datetime | None = None
    model_name: str | None = None
    model_version: str | None = None
    outcome: str | None = None
    fingerprint: str | None = None


def to_unix_nano(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1000


def iso(unix_nano: int) -> str:
    return datetime.fromtimestamp(unix_nano / 1e9, UTC).isoformat().replace("+00:00", "Z")


def _encode_cursor(start: int, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{start}:{row_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        start, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        return int(start), int(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("invalid cursor: pass the `next_cursor` of a previous page") from exc


def _columns(table: Any, *exclude: str) -> list[Any]:
    t: Table = table.__table__
    return [c for c in t.columns if c.name not in exclude and c.name != "project_id"]


def _request_dict(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    data.pop("id", None)
    data["request_id"] = data["trace_id"]
    data["start_time"] = iso(data["start_time_unix_nano"])
    data["end_time"] = iso(data["end_time_unix_nano"])
    return data


def list_requests(
    engine: Engine, project_id: int, flt: RequestFilter, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """Newest first, `limit` at a time; `next_cursor` continues where the page ended."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    if flt.model_version and not flt.model_name:
        raise BadRequest("model_version needs model_name too")
    query = select(*_columns(Request)).where(Request.project_id == project_id)
    if flt.model_name:
        match = select(RequestModel.trace_id).where(
            RequestModel.project_id == project_id, RequestModel.model_name == flt.model_name
        )
        if flt.model_version:
            match = match.where(RequestModel.model_version == flt.model_version)
        query = query.where(Request.trace_id.in_(match))
    if flt.since:
        query = query.where(Request.start_time_unix_nano >= to_unix_nano(flt.since))
    if flt.until:
        query = query.where(Request.start_time_unix_nano < to_unix_nano(flt.until))
    if flt.outcome:
        query = query.where(Request.outcome == flt.outcome)
    if flt.fingerprint:
        query = query.where(Request.fingerprint == flt.fingerprint)
    if cursor:
        start, row_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                Request.start_time_unix_nano < start,
                and_(Request.start_time_unix_nano == start, Request.id < row_id),
            )
        )
    query = query.order_by(Request.start_time_unix_nano.desc(), Request.id.desc()).limit(limit + 1)
    with read_connection(engine) as conn:
        rows = conn.execute(query).all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = _encode_cursor(last.start_time_unix_nano, last.id)
    return {"items": [_request_dict(r) for r in page], "next_cursor": next_cursor}


def get_request(engine: Engine, project_id: int, request_id: str) -> dict[str, Any]:
    """One request with its span tree, world-model states, decisions and policy evaluations."""
    trace_id = request_id.lower()
    with read_connection(engine) as conn:
        row = conn.execute(
            select(*_columns(Request)).where(
                Request.project_id == project_id, Request.trace_id == trace_id
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"no request {request_id!r} in this project")
        detail = _request_dict(row)
        spans = _spans(conn, project_id, trace_id)
        detail["spans"] = spans
        detail["span_tree"] = span_tree(spans)
        detail["states"] = _rows(conn, WorldModelState, project_id, trace_id, "span_id", "seq")
        detail["decisions"] = _rows(conn, PlannerDecision, project_id, trace_id, "time_unix_nano")
        detail["policy_evaluations"] = _rows(
            conn, PolicyEvaluation, project_id, trace_id, "time_unix_nano", "seq"
        )
    return detail


def get_trace(engine: Engine, project_id: int, trace_id: str) -> dict[str, Any]:
    """Every stored span of a trace, flat and as a tree, whether or not it has a root yet."""
    trace_id = trace_id.lower()
    with read_connection(engine) as conn:
        spans = _spans(conn, project_id, trace_id)
    if not spans:
        raise NotFound(f"no trace {trace_id!r} in this project")
    return {"trace_id": trace_id, "spans": spans, "span_tree": span_tree(spans)}


def _spans(conn: Any, project_id: int, trace_id: str) -> list[dict[str, Any]]:
    query = (
        select(*_columns(Span, "id", "body_digest", "resource"))
        .where(Span.project_id == project_id, Span.trace_id == trace_id)
        .order_by(Span.start_time_unix_nano, Span.span_id)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def _rows(
    conn: Any, model: Any, project_id: int, trace_id: str, *order: str
) -> list[dict[str, Any]]:
    query = (
        select(*_columns(model, "id"))
        .where(model.project_id == project_id, model.trace_id == trace_id)
        .order_by(*(getattr(model, o) for o in order))
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def span_tree(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nest spans under their parents; a span whose parent is missing becomes a root.

    Built breadth-first from the roots, so ids that loop (a malformed sender) cannot make a
    cycle: each span appears exactly once.
    """
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        children.setdefault(span["parent_span_id"] or "", []).append(span)
    order = [
        s for s in spans if s["parent_span_id"] not in ids or s["parent_span_id"] == s["span_id"]
    ]
    order += spans  # whatever the roots do not reach (a loop) is placed as a root too
    placed: set[str] = set()
    roots: list[dict[str, Any]] = []
    for start in order:
        if start["span_id"] in placed:
            continue
        placed.add(start["span_id"])
        node: dict[str, Any] = {"span_id": start["span_id"], "name": start["name"], "children": []}
        roots.append(node)
        queue = [(start, node)]
        while queue:
            span, parent = queue.pop()
            for child in children.get(span["span_id"], []):
                if child["span_id"] in placed:
                    continue
                placed.add(child["span_id"])
                child_node = {"span_id": child["span_id"], "name": child["name"], "children": []}
                parent["children"].append(child_node)
                queue.append((child, child_node))
    return roots
