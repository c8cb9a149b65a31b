from __future__ import annotations

import json
import re

import numpy as np
import pytest

from examples.booking.planner import Decision, Planner, PlannerWeights
from examples.booking.sim import Action, Calendar, Intent, simulate
from examples.booking.world_model import Prediction


def _truth(intent: Intent, actions: list[Action], calendar: Calendar) -> list[Prediction]:
    """The simulator's own expectations, standing in for a perfect world model."""
    rng = np.random.default_rng(0)
    outcomes = [simulate(intent, a, calendar, rng) for a in actions]
    return [Prediction(o.conflict_probability, o.utilisation, o.cost) for o in outcomes]


def _plan(planner: Planner, intent: Intent, calendar: Calendar) -> Decision:
    actions = planner.propose(intent, calendar)
    return planner.decide(intent, calendar, actions, _truth(intent, actions, calendar))


def test_decision_carries_every_candidate_and_respects_hard_constraints() -> None:
    calendar = Calendar.generate(seed=4)
    planner = Planner(n_candidates=16)
    intent = Intent(8, 2, 10, 2, frozenset({"projector", "video"}), flexibility_hours=2)
    decision = _plan(planner, intent, calendar)
    assert len(decision.candidates) == 16
    assert len({c.label for c in decision.candidates}) == 16
    assert decision.chosen is not None and decision.chosen.feasible
    room = calendar.rooms[decision.chosen.action.room]
    assert room.capacity >= 8 and {"projector", "video"} <= room.equipment
    # Every infeasible candidate says why, and only feasible ones could have been chosen.
    for c in decision.candidates:
        r = calendar.rooms[c.action.room]
        assert c.feasible == (
            r.capacity >= 8
            and {"projector", "video"} <= r.equipment
            and c.predicted.conflict_probability <= planner.max_conflict
        )
    # The best feasible candidate among those the user would accept as asked.
    acceptable = [
        c
        for c in decision.candidates
        if c.feasible
        and (c.action.day_offset, c.action.duration_hours) == (2, 2)
        and abs(c.action.start_hour - 10) <= 2
    ]
    assert decision.kind == "booked"
    assert decision.chosen == max(acceptable, key=lambda c: c.score)
    assert "capacity >= 8" in decision.constraints
    assert "equipment includes video" in decision.constraints
    assert 0.0 <= decision.confidence <= 1.0
    assert decision.confidence == pytest.approx(1 - decision.chosen.predicted.conflict_probability)


def test_to_record_is_json_and_names_every_candidate() -> None:
    calendar = Calendar.generate(seed=4)
    decision = _plan(Planner(), Intent(4, 1, 14, 1), calendar)
    record = json.loads(json.dumps(decision.to_record()))
    assert set(record) == {"candidates", "chosen", "constraints", "rationale", "confidence"}
    assert len(record["candidates"]) == 16
    for row in record["candidates"]:
        assert {"action", "score", "predicted"} <= set(row)
        assert set(row["predicted"]) == {"conflict_probability", "utilisation", "cost"}
        assert re.fullmatch(r"room-\d{2}@2026-\d{2}-\d{2}T\d{2}:00/[1-4]h", row["action"])
    assert record["chosen"] in {row["action"] for row in record["candidates"]}
    assert record["rationale"]


def test_candidates_are_seeded_per_request() -> None:
    calendar = Calendar.generate(seed=1)
    planner = Planner(seed=3)
    a, b = Intent(4, 1, 14, 1), Intent(5, 1, 14, 1)
    assert planner.propose(a, calendar) == planner.propose(a, calendar)
    assert planner.propose(a, calendar) != planner.propose(b, calendar)
    assert planner.propose(a, calendar) != Planner(seed=4).propose(a, calendar)


def test_busy_requested_slot_gives_a_counter_proposal() -> None:
    calendar = Calendar.generate(seed=0, occupancy=0.0)
    calendar.busy[:, 1, 10:12] = True  # every room is taken at the requested time
    intent = Intent(4, 1, 10, 2, flexibility_hours=0)
    decision = _plan(Planner(), intent, calendar)
    assert decision.kind == "counter_proposal"
    assert decision.chosen is not None
    chosen = decision.chosen.action
    assert calendar.is_free(chosen)
    assert (chosen.day_offset, chosen.start_hour) != (1, 10)
    assert decision.requested_slot == "2026-11-24T10:00/2h"
    assert "not feasible" in decision.rationale


def test_free_requested_slot_is_booked_and_move_within_flexibility_counts() -> None:
    calendar = Calendar.generate(seed=0, occupancy=0.0)
    decision = _plan(Planner(), Intent(4, 1, 10, 2, flexibility_hours=0), calendar)
    assert decision.kind == "booked"
    assert decision.chosen is not None and decision.chosen.action.start_hour == 10
    calendar.busy[:, 1, 10:12] = True
    flexible = _plan(Planner(), Intent(4, 1, 10, 2, flexibility_hours=2), calendar)
    assert flexible.kind == "booked"
    assert flexible.chosen is not None and flexible.chosen.action.start_hour != 10


def test_no_room_large_enough_asks_to_clarify() -> None:
    calendar = Calendar.generate(seed=0)
    decision = _plan(Planner(), Intent(25, 1, 10, 2), calendar)
    assert decision.kind == "clarify" and decision.chosen is None
    assert len(decision.candidates) == 16
    assert all(not c.feasible for c in decision.candidates)
    assert "capacity" in decision.rationale


def test_incomplete_or_impossible_intents_are_problems() -> None:
    calendar, planner = Calendar.generate(seed=0), Planner()
    assert planner.problems(Intent(None, 1, None, 2), calendar) == [
        "missing people",
        "missing start_hour",
    ]
    assert planner.problems(Intent(4, 30, 10, 6), calendar) == [
        "day must be within the next 14 days",
        "bookings last at most 4 hours",
    ]
    decision = planner.clarify(Intent(None, 1, None, 2), ["missing people"])
    assert decision.kind == "clarify" and decision.missing == ["people", "start_hour"]
    assert decision.to_record()["candidates"] == []


def test_weights_prefer_a_right_sized_room() -> None:
    weights = PlannerWeights()
    assert weights.fit_of(0.7) == 1.0
    assert weights.fit_of(0.1) < weights.fit_of(0.5) < weights.fit_of(0.7)
    assert weights.fit_of(2.0) == 0.0
