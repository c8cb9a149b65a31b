"""Shadow-run root spans at ingest: a `shadow_runs` row, never a request; stored once."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, func, select

from app.store.tables import PlannerDecision, Request, RequestModel, ShadowRun, WorldModelState
from collectors import conventions as wire
from tests import otlp
from tests.conftest import LiveService

START = 1_700_000_000_000_000_000


def count(engine: Engine, model: Any, **where: Any) -> int:
    query = select(func.count()).select_from(model)
    for column, wanted in where.items():
        query = query.where(getattr(model, column) == wanted)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def decision(trace: bytes, span: bytes, parent: bytes, chosen: str, start: int) -> Any:
    candidates = [{"action": "room-1", "score": 0.9}, {"action": "room-2", "score": 0.4}]
    return otlp.span(trace, span, wire.DECISION_SPAN, parent, start=start, attrs={
        wire.PLANNER_CANDIDATES: json.dumps(candidates), wire.PLANNER_CHOSEN: chosen,
    })  # fmt: skip


def test_a_shadow_root_is_a_shadow_run_not_a_request_and_a_resend_stores_it_once(
    live: LiveService,
) -> None:
    ids = otlp.Ids(11)
    live_trace, live_root = ids.trace(), ids.span()
    shadow_trace, shadow_root, rollout = ids.trace(), ids.span(), ids.span()
    models = {wire.model_name("world_model"): "wm", wire.model_version("world_model"): "4"}
    state = {wire.STATE_STEP: 0, wire.STATE_LAYER: "transition",
             wire.STATE_SUMMARY: [0.1, 0.2, 0.0, 0.3, 1.0], wire.STATE_PROJECTION: [0.5, 0.5]}
    spans = [
        otlp.span(live_trace, live_root, wire.REQUEST_SPAN, start=START, attrs={
            wire.model_name("world_model"): "wm", wire.model_version("world_model"): "3",
            wire.REQUEST_OUTCOME: "booked",
        }),
        decision(live_trace, ids.span(), live_root, "room-1", START + 1),
        otlp.span(shadow_trace, shadow_root, wire.SHADOW_SPAN, start=START + 10_000_000,
                  duration=7_000_000, attrs={
            wire.SHADOW_REQUEST: live_trace.hex(), wire.SHADOW_EXPERIMENT: "wm-candidate",
            wire.SHADOW_ARM: "candidate", wire.REQUEST_OUTCOME: "booked", **models,
        }),
        otlp.span(shadow_trace, rollout, wire.ROLLOUT_SPAN, shadow_root, start=START + 10_000_001,
                  events=[(wire.STATE_EVENT, state), (wire.STATE_EVENT, state)]),
        decision(shadow_trace, ids.span(), shadow_root, "room-2", START + 10_000_002),
    ]  # fmt: skip
    body = otlp.request(spans).SerializeToString()
    key = live.key("shop", "ingest", "read")
    with live.client(key) as client:
        for _ in range(2):
            client.post("/v1/traces", content=body, headers=otlp.PROTOBUF).raise_for_status()
        runs = client.get(f"/v1/requests/{live_trace.hex()}/shadows").raise_for_status().json()
        page = client.get("/v1/requests").raise_for_status().json()

    engine = live.engine
    assert count(engine, ShadowRun) == 1
    assert count(engine, Request) == 1 and count(engine, RequestModel) == 1
    assert [r["request_id"] for r in page["items"]] == [live_trace.hex()]
    # Its states and decision are stored under its own trace id.
    assert count(engine, WorldModelState, trace_id=shadow_trace.hex()) == 2
    assert count(engine, PlannerDecision, trace_id=shadow_trace.hex()) == 1
    (run,) = runs["items"]
    assert run == {
        "shadow_trace_id": shadow_trace.hex(),
        "request_id": live_trace.hex(),
        "experiment": "wm-candidate",
        "arm": "candidate",
        "models": {"world_model": {"name": "wm", "version": "4"}},
        "chosen": "room-2",
        "live_chosen": "room-1",
        "agrees": False,
        "outcome": "booked",
        "status": "unset",
        "duration_ms": 7.0,
        "start_time_unix_nano": START + 10_000_000,
    }


def test_a_shadow_decision_sent_apart_from_its_root_is_found_at_read_time(
    live: LiveService,
) -> None:
    ids = otlp.Ids(12)
    live_trace, live_root = ids.trace(), ids.span()
    shadow_trace, shadow_root = ids.trace(), ids.span()
    first = [
        otlp.span(live_trace, live_root, wire.REQUEST_SPAN, start=START),
        decision(live_trace, ids.span(), live_root, "room-1", START + 1),
        otlp.span(shadow_trace, shadow_root, wire.SHADOW_SPAN, start=START + 5, attrs={
            wire.SHADOW_REQUEST: live_trace.hex(), wire.SHADOW_EXPERIMENT: "e",
            wire.SHADOW_ARM: "b",
        }),
    ]  # fmt: skip
    later = [decision(shadow_trace, ids.span(), shadow_root, "room-1", START + 6)]
    with live.client(live.key("shop", "ingest", "read")) as client:
        for spans in (first, later):
            body = otlp.request(spans).SerializeToString()
            client.post("/v1/traces", content=body, headers=otlp.PROTOBUF).raise_for_status()
        (run,) = client.get(f"/v1/requests/{live_trace.hex()}/shadows").json()["items"]
    assert (run["chosen"], run["live_chosen"], run["agrees"]) == ("room-1", "room-1", True)
    with live.engine.connect() as conn:
        assert conn.execute(select(ShadowRun.chosen)).scalar_one() is None
