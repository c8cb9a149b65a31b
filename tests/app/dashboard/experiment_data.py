"""A project of experiments for the dashboard tests, through the real ingest path
(tests/app/experiments/traffic.py): an A/B whose challenger is clearly worse, a biased split
(SRM), a shadow arm that disagrees with the live decision on some requests, scores, and alias
moves of the world model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, update

from app.experiments import results
from app.store.engine import write_transaction
from app.store.tables import Deployment, Experiment
from tests.app.experiments import traffic
from tests.app.experiments.traffic import SECOND, Req

MODEL = traffic.WORLD_MODEL
PLANNER = "mpc-planner"  # the planner of traffic.py's requests
PROJECT = "lab"
PER_ARM = 80
LIVE_CHOICE = "room-a@15:00"
SHADOW_CHOICE = "room-c@09:00"
DISAGREEING = 5  # of the shadowed requests, the shadow chose otherwise on this many
CORRECTION = {"action": "room-b@16:00"}


@dataclass(frozen=True)
class Lab:
    project_id: int
    control: list[str]  # request ids of the A/B's control arm (world model v1)
    challenger: list[str]  # of its challenger (v2)
    disagreeing: list[str]  # requests on which the shadow arm chose another action
    scored: str  # a challenger request with a correction and a user score


def _at(start: int, i: int) -> int:
    return start + i * 180 * SECOND  # one request every 3 minutes: a 4-hour curve


def build(engine: Engine, project: str = PROJECT, now_ns: int | None = None) -> Lab:
    """The experiments `wm-ab` (running), `wm-srm` (stopped, a 100/20 split of a 50/50
    configuration) and `wm-shadow` (running, on the planner stage: one live arm, the planner's
    version 2, and the shadow arm `v9`), and their requests of the last four hours."""
    pid = traffic.project(engine, project)
    now = now_ns or time.time_ns()
    start = now - 4 * 3600 * SECOND
    began = start - 3600 * SECOND
    traffic.experiment(
        engine, pid, "wm-ab",
        [("control", f"models:/{MODEL}/1", 0.5), ("challenger", f"models:/{MODEL}/2", 0.5)],
        guardrails=["latency_p95_ms", "deny_rate"], starts_at_ns=began,
    )  # fmt: skip
    control = [
        Req(start=_at(start, i), version="1", latency_ms=40.0 + i % 10,
            outcome="booked" if i % 10 else "clarify")
        for i in range(PER_ARM)
    ]  # fmt: skip
    challenger = [
        Req(start=_at(start, i) + 1, version="2", latency_ms=140.0 + i % 10,
            outcome="booked" if i % 5 == 0 else "clarify")
        for i in range(PER_ARM)
    ]  # fmt: skip
    control_ids = traffic.ingest(engine, pid, control, seed=21)
    challenger_ids = traffic.ingest(engine, pid, challenger, seed=22)
    traffic.assign(engine, pid, "wm-ab", "control", control_ids, [r.start for r in control])
    traffic.assign(
        engine, pid, "wm-ab", "challenger", challenger_ids, [r.start for r in challenger]
    )

    # The same 50/50 configuration, but 100 requests went to one arm and 20 to the other.
    traffic.experiment(
        engine, pid, "wm-srm",
        [("a", f"models:/{MODEL}/1", 0.5), ("b", f"models:/{MODEL}/1", 0.5)],
        starts_at_ns=began,
    )  # fmt: skip
    both = control_ids + challenger_ids
    starts = [r.start for r in control + challenger]
    traffic.assign(engine, pid, "wm-srm", "a", both[:100], starts[:100])
    traffic.assign(engine, pid, "wm-srm", "b", both[100:120], starts[100:120])

    traffic.experiment(
        engine, pid, "wm-shadow", [("live", f"models:/{PLANNER}/2", 1.0)],
        shadows=[("v9", f"models:/{PLANNER}/9")], starts_at_ns=began,
    )  # fmt: skip
    shadowed = control_ids[:40]
    traffic.assign(engine, pid, "wm-shadow", "live", shadowed, [r.start for r in control[:40]])
    for i, request in enumerate(shadowed):
        chosen = SHADOW_CHOICE if i < DISAGREEING else LIVE_CHOICE
        traffic.shadow(engine, pid, "wm-shadow", "v9", request, chosen, control[i].start + 5)

    scored = challenger_ids[0]
    traffic.score(engine, pid, scored, "correction", None, correction=CORRECTION)
    traffic.score(engine, pid, scored, "helpful", 2.0, source="user")

    stopped = datetime.fromtimestamp(now / SECOND, UTC)
    with write_transaction(engine) as conn:
        conn.execute(
            update(Experiment)
            .where(Experiment.project_id == pid, Experiment.name == "wm-srm")
            .values(status="stopped", stopped_at=stopped)
        )
        # One running experiment per stage: the shadow experiment varies the planner.
        conn.execute(
            update(Experiment)
            .where(Experiment.project_id == pid, Experiment.name == "wm-shadow")
            .values(stage="planner")
        )
        conn.execute(
            insert(Deployment),
            [
                {"project_id": pid, "model_name": MODEL, "alias": "champion", "action": action,
                 "from_version": old, "to_version": new, "allowed": allowed, "verdicts": [],
                 "actor": "key:test"}
                for action, old, new, allowed in [
                    ("promote", None, "1", True), ("promote", "1", "2", False),
                    ("promote", "1", "2", True), ("rollback", "2", "1", True),
                ]
            ],
        )  # fmt: skip
    # The A/B's results as the service's job would have stored them; the others are left for
    # the page views to compute.
    results.refresh(engine, pid, "wm-ab")
    return Lab(pid, control_ids, challenger_ids, shadowed[:DISAGREEING], scored)
