"""Shadow runs from the SDK to a live service: run after the live answer, on the bounded
worker, stored linked to the live request and nowhere a request is read."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import select

import collectors
from app.drift import windows
from app.experiments import shadows
from app.store.tables import PlannerDecision, ShadowRun, WorldModelState
from app.tenancy.projects import project_id as find_project
from collectors import conventions as wire
from collectors._shadow import shadow_trace_id
from collectors.experiments import ShadowArm
from tests.collectors.test_sdk import TinyWorldModel, init
from tests.conftest import LiveService

ARM = ShadowArm("wm-candidate", "candidate", "models:/tiny-world-model/4")
WAIT = 20  # seconds a test waits for a thread it released; never reached when all is well


def stack(model: torch.nn.Module, chosen: str | None = None) -> str:
    """The planner over the world model: rollout, decision; the chosen action."""
    with torch.no_grad():
        scores = model(torch.ones(3, 4)).squeeze(1).tolist()
    candidates = [{"action": f"room-{i}", "score": s} for i, s in enumerate(scores)]
    action = chosen or max(candidates, key=lambda c: c["score"])["action"]
    collectors.decision(candidates, action, constraints=["capacity>=6"])
    return str(action)


def serve(
    model: torch.nn.Module, run: Callable[[], Any] | None, arm: ShadowArm = ARM
) -> tuple[str, str, bool]:
    """A live request that schedules a shadow run: (answer, request id, scheduled)."""
    with collectors.request({"text": "a room for 6"}, subject="u-1") as req:
        answer = stack(model, "room-1")
        scheduled = collectors.shadow(arm, run) if run is not None else False
        req.set_outcome("booked")
    assert req.trace_id is not None
    return answer, req.trace_id, scheduled


def test_a_shadow_runs_after_the_live_answer_and_is_stored_linked_to_the_request(
    live: LiveService, tmp_path: Path
) -> None:
    init(live, tmp_path)
    collectors.model("world_model", "tiny-world-model", "3")
    collectors.model("planner", "mpc-planner", "2")
    champion, candidate = TinyWorldModel(), TinyWorldModel()
    with torch.no_grad():
        for p in candidate.parameters():
            p.add_(0.1)
    started, release = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def shadow_run() -> str:
        started.set()
        assert release.wait(WAIT)
        collectors.model("world_model", "tiny-world-model", "4")
        # The stack's own instrumented entry point: its request joins the shadow record.
        with collectors.request({"text": "a room for 6"}) as req:
            seen["trace_id"] = req.trace_id
            req.set_outcome("booked")
            return stack(candidate, "room-2")

    with (
        collectors.watch(champion, layers=["encoder", "transition"], dim=8),
        collectors.watch(candidate, layers=["encoder", "transition"], dim=8),
    ):
        with collectors.request({"text": "a room for 6"}, subject="u-1") as req:
            answer = stack(champion, "room-1")
            assert collectors.shadow(ARM, shadow_run) is True
            assert collectors.shadow(ARM, shadow_run) is False  # once per arm and request
            # A flush inside the live request has nothing of the shadow to wait for: the run
            # is kept with the live record until the scope closes.
            assert collectors.flush(10)
            assert not started.is_set()
            req.set_outcome("booked")
        live_id = req.trace_id
        assert live_id is not None
        # The live answer is back while the shadow has not run (it waits on `release`).
        assert answer == "room-1"
        assert collectors.stats()["shadows"]["run"] == 0
        release.set()
        assert collectors.flush(WAIT)
    assert started.is_set()
    assert collectors.stats()["shadows"] == {"queued": 1, "run": 1, "failed": 0, "dropped": 0}
    shadow_id = shadow_trace_id(bytes.fromhex(live_id), ARM).hex()
    assert seen["trace_id"] == shadow_id

    with live.client(live.key("shop", "read")) as client:
        runs = client.get(f"/v1/requests/{live_id}/shadows").raise_for_status().json()
        page = client.get("/v1/requests").raise_for_status().json()
        detail = client.get(f"/v1/requests/{live_id}").raise_for_status().json()
        assert client.get(f"/v1/requests/{'0' * 32}/shadows").status_code == 404
        trace = client.get(f"/v1/traces/{shadow_id}").raise_for_status().json()
    (run,) = runs["items"]
    assert run["shadow_trace_id"] == shadow_id
    assert run["request_id"] == live_id
    assert (run["experiment"], run["arm"]) == ("wm-candidate", "candidate")
    assert run["models"]["world_model"] == {"name": "tiny-world-model", "version": "4"}
    assert run["models"]["planner"] == {"name": "mpc-planner", "version": "2"}
    assert (run["chosen"], run["live_chosen"], run["agrees"]) == ("room-2", "room-1", False)
    assert run["outcome"] == "booked"
    assert run["status"] != "error"
    # Not a request: the list has the live one only, whose own record holds no shadow rows.
    assert [item["request_id"] for item in page["items"]] == [live_id]
    assert [d["chosen"] for d in detail["decisions"]] == ["room-1"]
    names = {s["name"] for s in trace["spans"]}
    assert {wire.SHADOW_SPAN, wire.DECISION_SPAN, wire.ROLLOUT_SPAN} <= names

    project_id = find_project(live.engine, "shop")
    with live.engine.connect() as conn:
        states = conn.execute(
            select(WorldModelState.layer).where(WorldModelState.trace_id == shadow_id)
        ).all()
        chosen = conn.execute(
            select(PlannerDecision.chosen).where(PlannerDecision.trace_id == shadow_id)
        ).scalars()
        assert list(chosen) == ["room-2"]
        assert len(states) == 9  # encoder once, transition 8 steps
        result = shadows.agreement(conn, project_id, "wm-candidate")
    assert (result.agree, result.total) == (0, 1)
    (disagreement,) = result.disagreements
    assert disagreement.live_chosen == "room-1"
    assert disagreement.shadow_chosen == "room-2"
    assert disagreement.request_trace_id == live_id


def test_a_shadow_on_the_live_version_stays_out_of_its_drift_window(
    live: LiveService, tmp_path: Path
) -> None:
    init(live, tmp_path)
    collectors.model("world_model", "tiny-world-model", "3")
    model = TinyWorldModel()
    with collectors.watch(model, layers=["transition"], dim=8):
        # The shadow runs the same version (no collectors.model in it): the risky case.
        _, live_id, scheduled = serve(model, lambda: stack(model, "room-0"))
        assert scheduled
        assert collectors.flush(WAIT)
    project_id = find_project(live.engine, "shop")
    with live.engine.connect() as conn:
        stored = conn.execute(select(ShadowRun.trace_id, ShadowRun.models)).all()
        shadow_states = conn.execute(
            select(WorldModelState.id).where(WorldModelState.trace_id == stored[0][0])
        ).all()
    assert stored[0][1]["world_model"] == {"name": "tiny-world-model", "version": "3"}
    assert len(shadow_states) == 8

    window = windows.load(
        live.engine, project_id, "tiny-world-model", "3", windows.Bounds(0, 2**63 - 1)
    )
    assert window.trace_ids == [live_id]
    vectors, owners = window.latent["transition"]
    assert len(vectors) == 1 and owners.tolist() == [0]
    assert window.decisions.chosen == ["room-1"]


def test_a_full_shadow_queue_drops_and_counts_without_blocking(
    live: LiveService, tmp_path: Path
) -> None:
    init(live, tmp_path, shadow_queue=2)
    model = TinyWorldModel()
    started, release = threading.Event(), threading.Event()

    def blocking() -> None:
        started.set()
        assert release.wait(WAIT)
        stack(model)

    assert serve(model, blocking)[2]
    assert started.wait(WAIT)  # the worker is busy with it: the queue is empty again
    scheduled = [serve(model, lambda: stack(model))[2] for _ in range(3)]
    assert scheduled == [True, True, False]
    assert collectors.stats()["shadows"] == {"queued": 3, "run": 0, "failed": 0, "dropped": 1}
    release.set()
    assert collectors.flush(WAIT)
    assert collectors.stats()["shadows"] == {"queued": 3, "run": 3, "failed": 0, "dropped": 1}
    with live.engine.connect() as conn:
        assert len(conn.execute(select(ShadowRun.id)).all()) == 3


def test_a_failing_shadow_is_counted_and_stored_as_an_error(
    live: LiveService, tmp_path: Path
) -> None:
    init(live, tmp_path)
    model = TinyWorldModel()

    def failing() -> None:
        stack(model, "room-0")
        raise RuntimeError("candidate model could not load")

    answer, live_id, scheduled = serve(model, failing)
    assert (answer, scheduled) == ("room-1", True)
    assert collectors.flush(WAIT)
    assert collectors.stats()["shadows"] == {"queued": 1, "run": 0, "failed": 1, "dropped": 0}
    with live.client(live.key("shop", "read")) as client:
        (run,) = client.get(f"/v1/requests/{live_id}/shadows").raise_for_status().json()["items"]
        trace = client.get(f"/v1/traces/{run['shadow_trace_id']}").raise_for_status().json()
    assert (run["status"], run["outcome"], run["chosen"]) == ("error", "error", "room-0")
    root = next(s for s in trace["spans"] if s["parent_span_id"] is None)
    assert "candidate model could not load" in root["status_message"]


def test_shadow_schedules_nothing_outside_a_request_or_without_a_client(
    live: LiveService, tmp_path: Path
) -> None:
    ran: list[int] = []
    assert collectors.shadow(ARM, lambda: ran.append(1)) is False  # no client
    init(live, tmp_path)
    assert collectors.shadow(ARM, lambda: ran.append(1)) is False  # no request
    inner: list[bool] = []

    def nested() -> None:
        inner.append(collectors.shadow(ARM, lambda: ran.append(2)))  # no shadow of a shadow

    serve(TinyWorldModel(), nested)
    assert collectors.flush(WAIT)
    assert inner == [False] and ran == []
    assert collectors.stats()["shadows"]["run"] == 1


def test_a_flush_without_shadows_delivers_the_live_request_while_its_shadow_waits(
    live: LiveService, tmp_path: Path
) -> None:
    """What the gateway does before it answers: the live record is at the service, and the
    caller does not wait for the shadow run that follows it."""
    init(live, tmp_path)
    started, release = threading.Event(), threading.Event()

    def shadow_run() -> None:
        started.set()
        assert release.wait(WAIT)
        stack(TinyWorldModel(), "room-2")

    _, live_id, scheduled = serve(TinyWorldModel(), shadow_run)
    assert scheduled and started.wait(WAIT)
    try:
        assert collectors.flush(WAIT, shadows=False)
        assert not release.is_set() and collectors.stats()["shadows"]["run"] == 0
        with live.client(live.key("shop", "read")) as client:
            assert client.get(f"/v1/requests/{live_id}").status_code == 200
            assert client.get(f"/v1/requests/{live_id}/shadows").json()["items"] == []
    finally:
        release.set()
    assert collectors.flush(WAIT)
    assert collectors.stats()["shadows"]["run"] == 1
