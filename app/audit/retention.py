"""Retention of request detail, and legal holds that suspend it.

A project keeps the detail of its requests (spans, world-model states, planner decisions,
retained inputs) for `days` days, or for ever (the default). The request rows themselves,
their model versions and policy evaluations stay, and so does every ledger event: the
ledger records what was deleted (`retention.applied`) and verifies as before.

A project flagged `high_risk` (a high-risk AI system under the EU AI Act) cannot keep its
logs for less than six months (Art. 19(1) and 26(6)); Warden counts that as 183 days.
A legal hold on the project, a model (all versions, or one) or a subject suspends deletion
of what it covers, retention and erasure alike, until it is released.

Settings live in `projects.settings` under "retention": {"days": int | null, "high_risk": bool}.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)

from app.audit import erasure, ledger
from app.errors import BadRequest, NotFound
from app.store.engine import read_connection, write_transaction
from app.store.project_settings import merge_section, read_section
from app.store.tables import (
    LegalHold,
    LlmCall,
    PlannerDecision,
    Project,
    Request,
    RequestModel,
    RequestPayload,
    Retrieval,
    Span,
    WorldModelState,
)

KEY = "retention"
HIGH_RISK_FLOOR_DAYS = 183  # six months, EU AI Act Art. 19(1) and 26(6)
SCOPES = ("project", "model", "subject")
_NS_PER_DAY = 86_400 * 1_000_000_000
_CHUNK = 500


class RetentionSettings(BaseModel):
    days: int | None = Field(
        default=None, ge=1, description="days request detail is kept; null: for ever"
    )
    high_risk: bool = Field(
        default=False, description="a high-risk AI system: logs are kept at least six months"
    )

    @model_validator(mode="after")
    def _floor(self) -> RetentionSettings:
        if self.high_risk and self.days is not None and self.days < HIGH_RISK_FLOOR_DAYS:
            raise ValueError(
                f"a high-risk system keeps its logs at least six months ({HIGH_RISK_FLOOR_DAYS} "
                f"days; EU AI Act Art. 19(1) and 26(6)), so {self.days} days is too short: "
                f"give --days {HIGH_RISK_FLOOR_DAYS} or more, or keep them for ever"
            )
        return self


def load(conn: Connection, project_id: int) -> RetentionSettings:
    return read_section(conn, project_id, KEY, RetentionSettings)


def get_settings(engine: Engine, project_id: int) -> RetentionSettings:
    with read_connection(engine) as conn:
        return load(conn, project_id)


def configure(
    engine: Engine, project_id: int, changes: dict[str, Any], actor: str
) -> RetentionSettings:
    """Apply `changes` ("days", "high_risk") over the stored settings; a change that breaks
    the high-risk floor is refused (400) and nothing is stored. Recorded in the ledger."""
    with write_transaction(engine) as conn:
        merged = merge_section(conn, project_id, KEY, RetentionSettings, changes)
        ledger.append(conn, project_id, None, ledger.RETENTION_CHANGED,
                      {**merged.model_dump(mode="json"), "actor": actor})  # fmt: skip
    return merged


# -- legal holds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hold:
    id: int
    scope: str
    model_name: str | None
    model_version: str | None
    subject: str | None
    reason: str
    created_by: str
    created_at: datetime
    released_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "scope": self.scope, "model_name": self.model_name,
            "model_version": self.model_version, "subject": self.subject, "reason": self.reason,
            "created_by": self.created_by, "created_at": self.created_at.isoformat(),
            "released_at": self.released_at.isoformat() if self.released_at else None,
        }  # fmt: skip


def _hold(row: Any) -> Hold:
    return Hold(row.id, row.scope, row.model_name, row.model_version, row.subject, row.reason,
                row.created_by, row.created_at, row.released_at)  # fmt: skip


def place_hold(
    engine: Engine,
    project_id: int,
    actor: str,
    reason: str,
    model_name: str | None = None,
    model_version: str | None = None,
    subject: str | None = None,
) -> Hold:
    """Put a legal hold on the project (no model, no subject), a model (optionally one
    version) or a subject. The ledger records it, naming a subject by its pseudonym."""
    if not reason.strip():
        raise BadRequest("a legal hold needs a reason (the matter, a case number)")
    if model_version and not model_name:
        raise BadRequest("a model version needs its model name (--model NAME --version V)")
    if model_name and subject:
        raise BadRequest("a hold covers a model or a subject, not both: place two holds")
    scope = "model" if model_name else "subject" if subject else "project"
    with write_transaction(engine) as conn:
        hold_id = conn.execute(
            insert(LegalHold)
            .values(project_id=project_id, scope=scope, model_name=model_name,
                    model_version=model_version, subject=subject, reason=reason,
                    created_by=actor, created_at=datetime.now(UTC))
            .returning(LegalHold.id)
        ).scalar_one()  # fmt: skip
        row = conn.execute(select(LegalHold).where(LegalHold.id == hold_id)).one()
        payload: dict[str, Any] = {"hold_id": int(hold_id), "scope": scope, "reason": reason,
                                   "actor": actor}  # fmt: skip
        if model_name:
            payload["model"] = {"name": model_name, "version": model_version}
        if subject:
            payload["subject"] = erasure.pseudonym(conn, project_id, subject)
        ledger.append(conn, project_id, None, ledger.LEGAL_HOLD_PLACED, payload)
    return _hold(row)


def release_hold(engine: Engine, project_id: int, hold_id: int, actor: str) -> Hold:
    with write_transaction(engine) as conn:
        done = conn.execute(
            update(LegalHold)
            .where(LegalHold.id == hold_id, LegalHold.project_id == project_id,
                   LegalHold.released_at.is_(None))
            .values(released_at=datetime.now(UTC), released_by=actor)
        ).rowcount  # fmt: skip
        if not done:
            raise NotFound(f"no active legal hold {hold_id} in this project")
        row = conn.execute(select(LegalHold).where(LegalHold.id == hold_id)).one()
        ledger.append(conn, project_id, None, ledger.LEGAL_HOLD_RELEASED,
                      {"hold_id": hold_id, "actor": actor})  # fmt: skip
    return _hold(row)


def list_holds(engine: Engine, project_id: int, active_only: bool = True) -> list[Hold]:
    query = select(LegalHold).where(LegalHold.project_id == project_id).order_by(LegalHold.id)
    if active_only:
        query = query.where(LegalHold.released_at.is_(None))
    with read_connection(engine) as conn:
        return [_hold(r) for r in conn.execute(query)]


# -- applying retention ------------------------------------------------------------------------


@dataclass
class Applied:
    project: str
    days: int | None
    cutoff: datetime | None = None
    held: str | None = None  # why nothing was deleted (a project hold)
    requests: int = 0
    spans: int = 0
    states: int = 0
    decisions: int = 0
    payloads: int = 0

    @property
    def deleted(self) -> int:
        return self.spans + self.states + self.decisions + self.payloads


def _expired(project_id: int, cutoff_ns: int, holds: list[Hold]) -> Select[Any]:
    # Only requests that still have detail: a request done with is not looked at again.
    has_detail = (
        select(Span.id)
        .where(Span.project_id == project_id, Span.trace_id == Request.trace_id)
        .exists()
    )
    query = select(Request.trace_id).where(
        Request.project_id == project_id, Request.start_time_unix_nano < cutoff_ns, has_detail
    )
    for hold in holds:
        if hold.scope == "model":
            held = select(RequestModel.trace_id).where(
                RequestModel.project_id == project_id, RequestModel.model_name == hold.model_name
            )
            if hold.model_version:
                held = held.where(RequestModel.model_version == hold.model_version)
            query = query.where(Request.trace_id.not_in(held))
        elif hold.scope == "subject":
            query = query.where(
                or_(Request.subject.is_(None), Request.subject != hold.subject)
            )
    return query


def apply(engine: Engine, project: str, now: datetime | None = None) -> Applied:
    """Delete the project's request detail older than its retention, except what a legal
    hold covers; a `retention.applied` event records what went (when anything did)."""
    now = now or datetime.now(UTC)
    with read_connection(engine) as conn:
        project_id = conn.execute(
            select(Project.id).where(Project.name == project)
        ).scalar_one_or_none()
        if project_id is None:
            raise NotFound(f"no project named {project!r}")
        config = load(conn, project_id)
    result = Applied(project, config.days)
    if config.days is None:
        return result
    holds = list_holds(engine, project_id)
    if any(h.scope == "project" for h in holds):
        result.held = "a legal hold on the project suspends deletion"
        return result
    cutoff_ns = int(now.timestamp() * 1e9) - config.days * _NS_PER_DAY
    result.cutoff = datetime.fromtimestamp(cutoff_ns / 1e9, UTC)
    expired = _expired(project_id, cutoff_ns, holds)
    after = ""
    while True:
        # Request by request, in chunks, each in its own short write transaction.
        with read_connection(engine) as conn:
            traces = list(
                conn.execute(
                    expired.where(Request.trace_id > after)
                    .order_by(Request.trace_id)
                    .limit(_CHUNK)
                ).scalars()
            )
        if not traces:
            break
        after = traces[-1]
        with write_transaction(engine) as conn:
            _delete_detail(conn, project_id, traces, result)
    if not holds:
        with write_transaction(engine) as conn:
            _delete_orphans(conn, project_id, cutoff_ns, result)
    if result.deleted:
        with write_transaction(engine) as conn:
            ledger.append(
                conn, project_id, None, ledger.RETENTION_APPLIED,
                {"days": config.days, "cutoff_unix_nano": str(cutoff_ns),
                 "requests": result.requests, "spans": result.spans, "states": result.states,
                 "decisions": result.decisions, "payloads": result.payloads},
            )  # fmt: skip
    return result


def _delete_detail(
    conn: Connection, project_id: int, traces: list[str], result: Applied
) -> None:
    counts = []
    for model in (Span, WorldModelState, PlannerDecision, RequestPayload):
        counts.append(
            conn.execute(
                delete(model).where(model.project_id == project_id, model.trace_id.in_(traces))
            ).rowcount
        )
    spans, states, decisions, payloads = counts
    # A language-model call's prompt and completion go with the spans; its models, tokens and
    # cost stay with the request, as its model versions do.
    conn.execute(
        update(LlmCall)
        .where(LlmCall.project_id == project_id, LlmCall.trace_id.in_(traces))
        .values(input_messages=[], output_messages=[])
    )
    result.requests += len(traces)
    result.spans += spans
    result.states += states
    result.decisions += decisions
    result.payloads += payloads


def _delete_orphans(conn: Connection, project_id: int, cutoff_ns: int, result: Applied) -> None:
    """Spans, states and decisions of traces whose root never arrived, by their own time."""
    known = select(Request.trace_id).where(Request.project_id == project_id)
    result.spans += conn.execute(
        delete(Span).where(
            and_(Span.project_id == project_id, Span.start_time_unix_nano < cutoff_ns,
                 Span.trace_id.not_in(known))
        )
    ).rowcount  # fmt: skip
    result.states += conn.execute(
        delete(WorldModelState).where(
            and_(WorldModelState.project_id == project_id,
                 WorldModelState.time_unix_nano < cutoff_ns, WorldModelState.trace_id.not_in(known))
        )
    ).rowcount  # fmt: skip
    result.decisions += conn.execute(
        delete(PlannerDecision).where(
            and_(PlannerDecision.project_id == project_id,
                 PlannerDecision.time_unix_nano < cutoff_ns, PlannerDecision.trace_id.not_in(known))
        )
    ).rowcount  # fmt: skip
    conn.execute(
        delete(LlmCall).where(
            and_(LlmCall.project_id == project_id, LlmCall.start_time_unix_nano < cutoff_ns,
                 LlmCall.trace_id.not_in(known))
        )
    )  # fmt: skip
    conn.execute(
        delete(Retrieval).where(
            and_(Retrieval.project_id == project_id, Retrieval.time_unix_nano < cutoff_ns,
                 Retrieval.trace_id.not_in(known))
        )
    )  # fmt: skip


def apply_all(engine: Engine, now: datetime | None = None) -> list[Applied]:
    with read_connection(engine) as conn:
        names = list(conn.execute(select(Project.name).order_by(Project.name)).scalars())
    return [apply(engine, name, now) for name in names]
