"""Read side of the stored telemetry: requests, their details, traces, and how often each
policy judged. Always per project."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, and_, func, or_, select

from app.errors import BadRequest, NotFound
from app.store.engine import read_connection
from app.store.genai import request_genai
from app.store.read_models import (
    RequestDetail,
    RequestPage,
    RequestRecord,
    RequestSummary,
    Trace,
)
from app.store.tables import (
    PlannerDecision,
    PolicyEvaluation,
    Request,
    RequestModel,
    Span,
    WorldModelState,
)
from policies import Effect

MAX_PAGE = 500
# A model, policy or fingerprint filter matching at most this many requests is looked up by
# trace id; a broader one is checked request by request (`list_requests`).
SELECTIVE = 2000


@dataclass(frozen=True, slots=True)
class RequestFilter:
    since: datetime | None = None
    until: datetime | None = None
    model_name: str | None = None
    model_version: str | None = None
    outcome: str | None = None
    fingerprint: str | None = None
    # Requests a policy judged (with this outcome: allow, warn, require_review, deny).
    policy_id: str | None = None
    policy_outcome: str | None = None


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


def _request_fields(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    data.pop("id", None)
    data["request_id"] = data["trace_id"]
    data["start_time"] = iso(data["start_time_unix_nano"])
    data["end_time"] = iso(data["end_time_unix_nano"])
    return data


def list_requests(
    engine: Engine, project_id: int, flt: RequestFilter, limit: int = 50, cursor: str | None = None
) -> RequestPage:
    """Newest first, `limit` at a time; `next_cursor` continues where the page ended.

    On a large store a page costs about the same whatever the filters: a fingerprint that
    matches few requests looks them up by trace id; a model version (or a policy verdict)
    walks its own index newest first and looks its requests up a batch at a time (`_drive`);
    the remaining filters are checked on the requests found.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    if flt.model_version and not flt.model_name:
        raise BadRequest("model_version needs model_name too")
    if flt.policy_outcome and not flt.policy_id:
        raise BadRequest("policy_outcome needs policy_id too")
    after = _decode_cursor(cursor) if cursor else None
    since = to_unix_nano(flt.since) if flt.since else None
    until = to_unix_nano(flt.until) if flt.until else None
    checks: list[Any] = []  # checked on each request found
    driver: _Driver | None = None
    if flt.model_name:
        found = _model_matches(project_id, flt)
        if flt.model_version:
            # Its index is in start-time order: the requests' own order.
            driver = _Driver(found, RequestModel.start_time_unix_nano, RequestModel.id,
                             RequestModel.trace_id, exact=True)  # fmt: skip
            if after is not None:
                driver.query = driver.query.where(RequestModel.start_time_unix_nano <= after[0])
            if until is not None:
                driver.query = driver.query.where(RequestModel.start_time_unix_nano < until)
            if since is not None:
                driver.query = driver.query.where(RequestModel.start_time_unix_nano >= since)
        else:
            checks.append(_model_check(project_id, flt))
    if flt.policy_id:
        if driver is None:
            verdicts = select(
                PolicyEvaluation.time_unix_nano, PolicyEvaluation.id, PolicyEvaluation.trace_id
            ).where(
                PolicyEvaluation.project_id == project_id,
                PolicyEvaluation.policy_id == flt.policy_id,
                PolicyEvaluation.trace_id.is_not(None),
            )
            if flt.policy_outcome:
                verdicts = verdicts.where(PolicyEvaluation.outcome == flt.policy_outcome)
            if since is not None:  # a verdict comes after its request started
                verdicts = verdicts.where(PolicyEvaluation.time_unix_nano >= since)
            driver = _Driver(verdicts, PolicyEvaluation.time_unix_nano, PolicyEvaluation.id,
                             PolicyEvaluation.trace_id, exact=False)  # fmt: skip
        else:
            checks.append(_policy_check(project_id, flt))
    rows: Sequence[Any] = []
    with read_connection(engine) as conn:
        few: set[str] | None = None
        if flt.fingerprint:
            found_ids = set(
                conn.execute(
                    select(Request.trace_id)
                    .where(Request.project_id == project_id, Request.fingerprint == flt.fingerprint)
                    .limit(SELECTIVE + 1)
                ).scalars()
            )
            few = found_ids if len(found_ids) <= SELECTIVE else None
        if few is not None:
            if driver is not None:  # the driving filter becomes a check of the few
                checks.append(
                    _model_check(project_id, flt)
                    if driver.exact
                    else _policy_check(project_id, flt)
                )
            if few:
                query = _filtered(project_id, flt, after, indexed=False).where(
                    *checks, Request.trace_id.in_(sorted(few))
                )
                rows = conn.execute(query.limit(limit + 1)).all()
        elif driver is not None:
            base = _filtered(project_id, flt, after, indexed=False).where(*checks)
            rows = _drive(conn, driver, base, limit + 1)
        else:
            query = _filtered(project_id, flt, after, indexed=True).where(*checks)
            rows = conn.execute(query.limit(limit + 1)).all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = _encode_cursor(last.start_time_unix_nano, last.id)
    return RequestPage(
        items=[RequestSummary.model_validate(_request_fields(r)) for r in page],
        next_cursor=next_cursor,
    )


@dataclass
class _Driver:
    """An index that lists a filter's matches newest first: (time, id, trace id) rows. With
    `exact` its time is the request's start; otherwise a time at or after it."""

    query: Any
    time: Any
    id: Any
    trace_id: Any
    exact: bool


def _model_matches(project_id: int, flt: RequestFilter) -> Any:
    query = select(RequestModel.start_time_unix_nano, RequestModel.id, RequestModel.trace_id)
    query = query.where(
        RequestModel.project_id == project_id, RequestModel.model_name == flt.model_name
    )
    if flt.model_version:
        query = query.where(RequestModel.model_version == flt.model_version)
    return query


def _model_check(project_id: int, flt: RequestFilter) -> Any:
    # `|| ''`: SQLite must find the request's stages by trace id, not walk the model's index.
    served = [RequestModel.model_name.concat("") == flt.model_name]
    if flt.model_version:
        served.append(RequestModel.model_version == flt.model_version)
    return (
        select(RequestModel.id)
        .where(
            RequestModel.project_id == project_id,
            RequestModel.trace_id == Request.trace_id,
            *served,
        )
        .exists()
    )


def _policy_check(project_id: int, flt: RequestFilter) -> Any:
    judged = [PolicyEvaluation.policy_id.concat("") == flt.policy_id]
    if flt.policy_outcome:
        judged.append(PolicyEvaluation.outcome == flt.policy_outcome)
    return (
        select(PolicyEvaluation.id)
        .where(
            PolicyEvaluation.project_id == project_id,
            PolicyEvaluation.trace_id == Request.trace_id,
            *judged,
        )
        .exists()
    )


def _drive(conn: Any, driver: _Driver, base: Any, wanted: int) -> list[Any]:
    """The `wanted` newest requests of `base` among the driver's matches.

    The driver's index is read newest first, a batch at a time (growing), and each batch's
    requests are looked up by trace id. A request found is final once the batch has gone
    past its start time: every match not read yet is no newer (the driver's time is the
    request's start, or after it). So a dense filter costs one small batch, a sparse one a
    few bigger ones, and a filter matching only old requests no more than a recent one.
    """
    size = 4 * wanted
    key: tuple[int, int] | None = None
    found: dict[str, Any] = {}
    while True:
        query = driver.query
        if key is not None:
            query = query.where(
                or_(driver.time < key[0], and_(driver.time == key[0], driver.id < key[1]))
            )
        batch = conn.execute(query.order_by(driver.time.desc(), driver.id.desc()).limit(size)).all()
        traces = sorted({b[2] for b in batch})
        if traces:
            for row in conn.execute(base.where(Request.trace_id.in_(traces))):
                found[row.trace_id] = row
        exhausted = len(batch) < size
        boundary = batch[-1][0] if batch else 0
        final = [r for r in found.values() if exhausted or r.start_time_unix_nano > boundary]
        if exhausted or len(final) >= wanted:
            final.sort(key=lambda r: (r.start_time_unix_nano, r.id), reverse=True)
            return final[:wanted]
        key = (batch[-1][0], batch[-1][1])
        size = min(size * 4, 20_000)


def _filtered(
    project_id: int, flt: RequestFilter, after: tuple[int, int] | None, indexed: bool
) -> Any:
    """The requests query on the request's own columns, newest first; with `indexed` False
    none of those columns can serve as an index (see `list_requests`)."""

    def number(column: Any) -> Any:
        return column if indexed else column + 0

    def text(column: Any) -> Any:
        return column if indexed else column.concat("")

    start, row_id = number(Request.start_time_unix_nano), number(Request.id)
    query = select(*_columns(Request)).where(Request.project_id == project_id)
    if flt.since:
        query = query.where(start >= to_unix_nano(flt.since))
    if flt.until:
        query = query.where(start < to_unix_nano(flt.until))
    if flt.outcome:
        query = query.where(text(Request.outcome) == flt.outcome)
    if flt.fingerprint:
        query = query.where(text(Request.fingerprint) == flt.fingerprint)
    if after is not None:
        query = query.where(or_(start < after[0], and_(start == after[0], row_id < after[1])))
    return query.order_by(start.desc(), row_id.desc())


def get_request(engine: Engine, project_id: int, request_id: str) -> RequestDetail:
    """One request with its spans (flat and as a tree), world-model states, decisions and
    policy evaluations."""
    with read_connection(engine) as conn:
        fields = _request_row(conn, project_id, request_id)
        spans = _spans(conn, project_id, fields["trace_id"])
        fields.update(spans=spans, span_tree=span_tree(spans))
        fields.update(_recorded(conn, project_id, fields["trace_id"]))
    return RequestDetail.model_validate(fields)


def get_request_record(engine: Engine, project_id: int, request_id: str) -> RequestRecord:
    """`get_request` without the spans: a trace can hold tens of thousands."""
    with read_connection(engine) as conn:
        fields = _request_row(conn, project_id, request_id)
        fields.update(_recorded(conn, project_id, fields["trace_id"]))
    return RequestRecord.model_validate(fields)


def _request_row(conn: Any, project_id: int, request_id: str) -> dict[str, Any]:
    row = conn.execute(
        select(*_columns(Request)).where(
            Request.project_id == project_id, Request.trace_id == request_id.lower()
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no request {request_id!r} in this project")
    return _request_fields(row)


def _recorded(conn: Any, project_id: int, trace_id: str) -> dict[str, Any]:
    """What a request's spans recorded: world-model states, decisions, policy evaluations,
    language-model calls and retrieved documents."""
    return {
        **request_genai(conn, project_id, trace_id),
        "states": _rows(conn, WorldModelState, project_id, trace_id, "span_id", "seq"),
        "decisions": _rows(conn, PlannerDecision, project_id, trace_id, "time_unix_nano"),
        "policy_evaluations": _rows(
            conn, PolicyEvaluation, project_id, trace_id, "time_unix_nano", "seq"
        ),
    }


def get_trace(engine: Engine, project_id: int, trace_id: str) -> Trace:
    """Every stored span of a trace, flat and as a tree, whether or not it has a root yet."""
    trace_id = trace_id.lower()
    with read_connection(engine) as conn:
        spans = _spans(conn, project_id, trace_id)
    if not spans:
        raise NotFound(f"no trace {trace_id!r} in this project")
    return Trace.model_validate(
        {"trace_id": trace_id, "spans": spans, "span_tree": span_tree(spans)}
    )


# Rows stay dicts until the read model validates them all at once: one validation of a whole
# trace costs a fraction of one per span.
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
    """Nest spans under their parents ({span_id, name, children}, `SpanNode`); a span whose
    parent is missing becomes a root.

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


def policy_hits(
    engine: Engine, project_id: int, policy_ids: Sequence[str], since_ns: int
) -> dict[str, dict[str, int]]:
    """Evaluations since `since_ns` per policy and outcome (outcomes never met left out): one
    count over the (policy, outcome, time) index per pair, never a pass over the evaluations
    themselves."""
    out: dict[str, dict[str, int]] = {}
    with read_connection(engine) as conn:
        for policy_id in policy_ids:
            counts = out.setdefault(policy_id, {})
            for outcome in Effect:
                n = conn.execute(
                    select(func.count())
                    .select_from(PolicyEvaluation)
                    .where(
                        PolicyEvaluation.project_id == project_id,
                        PolicyEvaluation.policy_id == policy_id,
                        PolicyEvaluation.outcome == outcome.value,
                        PolicyEvaluation.time_unix_nano >= since_ns,
                    )
                ).scalar_one()
                if n:
                    counts[outcome.value] = int(n)
    return out
