"""Retention deletes expired request detail except what a legal hold covers; the ledger
keeps every event and still verifies; a high-risk project cannot keep less than six months."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from app.audit import erasure, heads, retention
from app.audit.ledger import checkpoints
from app.errors import BadRequest
from app.store.tables import PlannerDecision, Request, RequestPayload, Span, WorldModelState
from collectors import conventions as wire
from tests import otlp
from tests.app.audit.conftest import VAULT, events, ingest, project, verify

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000_000


def _detail(engine: Engine, trace: str) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(
            int(conn.execute(
                select(func.count()).select_from(model).where(model.trace_id == trace)
            ).scalar_one())
            for model in (Span, WorldModelState, PlannerDecision, RequestPayload)
        )  # fmt: skip


def test_retention_deletes_expired_detail_except_held_and_the_ledger_verifies(
    engine: Engine,
) -> None:
    pid = project(engine, "shop")
    key = heads.generate_key()
    ids = otlp.Ids(31)
    old = NOW - timedelta(days=40)
    sent: dict[str, str] = {}

    def send(name: str, when: datetime, **attrs: Any) -> None:
        spans = otlp.hybrid_trace(ids, start=_ns(when), **attrs)
        ingest(engine, pid, spans)
        sent[name] = spans[0].trace_id.hex()

    send("old", old, **{wire.REQUEST_INPUT: '{"a":1}'})
    send("old_held_subject", old, **{wire.REQUEST_SUBJECT: "dora"})
    send("old_held_model", old, **{wire.model_version("planner"): "9"})
    send("recent", NOW - timedelta(days=5))
    # A span whose trace never got its root: deleted by its own time.
    orphan = otlp.span(ids.trace(), ids.span(), "late child", parent=ids.span(), start=_ns(old))
    ingest(engine, pid, [orphan])

    retention.place_hold(engine, pid, "test", "case 1", subject="dora")
    retention.place_hold(engine, pid, "test", "case 2", model_name="mpc-planner",
                         model_version="9")  # fmt: skip
    checkpoints.sign_heads(engine, key, pid)
    with engine.connect() as conn:
        head = checkpoints.stored_heads(conn, pid, "shop")[-1]

    assert retention.apply(engine, "shop", NOW).days is None  # kept for ever by default
    retention.configure(engine, pid, {"days": 30}, "test")
    result = retention.apply(engine, "shop", NOW)
    assert (result.requests, result.spans, result.states, result.decisions, result.payloads) == (
        1, 4, 16, 1, 1
    )
    assert _detail(engine, sent["old"]) == (0, 0, 0, 0)
    assert _detail(engine, sent["old_held_subject"]) == (4, 16, 1, 0)
    assert _detail(engine, sent["old_held_model"]) == (4, 16, 1, 0)
    assert _detail(engine, sent["recent"]) == (4, 16, 1, 0)
    assert _detail(engine, orphan.trace_id.hex())[0] == 1  # holds keep orphans too
    with engine.connect() as conn:  # the request rows themselves stay
        assert conn.execute(select(func.count()).select_from(Request)).scalar_one() == 4
    assert erasure.read_input(engine, VAULT, pid, sent["old"]).state == "absent"

    # Released holds: the rest expires; nothing is held, so orphans go too.
    for hold in retention.list_holds(engine, pid):
        retention.release_hold(engine, pid, hold.id, "test")
    again = retention.apply(engine, "shop", NOW)
    assert (again.requests, again.spans) == (2, 9)
    assert _detail(engine, sent["recent"]) == (4, 16, 1, 0)

    kinds = [e.kind for e in events(engine, pid)]
    assert kinds.count("retention.applied") == 2 and "retention.changed" in kinds
    checkpoints.sign_heads(engine, key, pid)
    report = verify(engine, "shop", key, head)
    assert report.ok, report.message


def test_a_project_hold_suspends_all_deletion(engine: Engine) -> None:
    pid = project(engine, "shop")
    ingest(engine, pid, otlp.hybrid_trace(otlp.Ids(32), start=_ns(NOW - timedelta(400))))
    retention.configure(engine, pid, {"days": 200}, "test")
    retention.place_hold(engine, pid, "test", "litigation")
    result = retention.apply(engine, "shop", NOW)
    assert result.held and result.deleted == 0
    with pytest.raises(BadRequest, match="reason"):
        retention.place_hold(engine, pid, "test", " ")


def test_high_risk_projects_keep_logs_at_least_six_months(engine: Engine) -> None:
    pid = project(engine, "shop")
    retention.configure(engine, pid, {"days": 90}, "test")
    with pytest.raises(BadRequest, match=r"six months \(183 days; EU AI Act Art. 19"):
        retention.configure(engine, pid, {"high_risk": True}, "test")
    retention.configure(engine, pid, {"high_risk": True, "days": 183}, "test")
    with pytest.raises(BadRequest, match="at least six months"):
        retention.configure(engine, pid, {"days": 182}, "test")
    retention.configure(engine, pid, {"days": None}, "test")  # for ever is fine
    config = retention.get_settings(engine, pid)
    assert (config.days, config.high_risk) == (None, True)
