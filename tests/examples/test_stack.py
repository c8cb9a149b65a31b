from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from examples.booking.errors import IntentParseError
from examples.booking.intent import TokenUsage
from examples.booking.phrasings import generate_requests
from examples.booking.sim import Calendar, Intent
from examples.booking.stack import BookingAssistant
from examples.booking.world_model import TrainResult, WorldModel, WorldModelConfig


def _assistant(trained: TrainResult, seed: int = 7) -> BookingAssistant:
    return BookingAssistant(
        trained.model, "booking-world-model", "3", calendar=Calendar.generate(seed=seed)
    )


def test_answers_fifty_generated_requests_with_a_mix_of_outcomes(trained: TrainResult) -> None:
    assistant = _assistant(trained)
    taken_before = int(assistant.calendar.busy.sum())
    requests = generate_requests(50, seed=11, ambiguous_rate=0.1)
    answers = [assistant.handle(r.text) for r in requests]
    kinds = Counter(a.kind for a in answers)
    assert set(kinds) == {"booked", "counter_proposal", "clarify"}, kinds
    assert kinds["booked"] >= 20, kinds
    booked_hours = 0
    for request, answer in zip(requests, answers, strict=True):
        assert answer.message
        decision = answer.decision
        if not request.intent.is_complete():
            assert answer.kind == "clarify" and decision.candidates == []
            assert answer.message.startswith("Could you tell me")
            continue
        assert answer.intent == request.intent
        assert len(decision.candidates) == 16
        if answer.kind == "clarify":
            assert all(not c.feasible for c in decision.candidates)
            continue
        chosen = decision.chosen
        assert chosen is not None and chosen.feasible
        room = assistant.calendar.rooms[chosen.action.room]
        assert request.intent.people is not None
        assert room.capacity >= request.intent.people
        assert request.intent.equipment <= room.equipment
        assert room.id in answer.message
        if answer.kind == "booked":
            booked_hours += chosen.action.duration_hours
            a = chosen.action
            hours = slice(a.start_hour, a.start_hour + a.duration_hours)
            assert assistant.calendar.busy[a.room, a.day_offset, hours].all()
    # Bookings are written to the calendar, so later requests see the rooms as taken (a few
    # hours may already have been taken: the world model is not perfect, see the next test).
    added = int(assistant.calendar.busy.sum()) - taken_before
    assert 0.8 * booked_hours <= added <= booked_hours


def test_chosen_bookings_were_free_in_the_calendar(trained: TrainResult) -> None:
    assistant = _assistant(trained, seed=8)
    assistant.commit_bookings = False
    answers = [assistant.handle(r.text) for r in generate_requests(40, seed=12)]
    chosen = [a.decision.chosen for a in answers if a.decision.chosen is not None]
    assert len(chosen) >= 20
    free = sum(assistant.calendar.is_free(c.action) for c in chosen)
    # The world model is small and the planner accepts up to 50% predicted conflict.
    assert free / len(chosen) >= 0.85


def test_ambiguous_request_gets_a_question(trained: TrainResult) -> None:
    assistant = _assistant(trained)
    answer = assistant.handle("a room for 6 people tomorrow afternoon with a projector")
    assert answer.kind == "clarify"
    assert answer.decision.missing == ["start_hour", "duration_hours"]
    assert "what time it should start" in answer.message
    assert answer.decision.chosen is None and answer.decision.to_record()["chosen"] is None


def test_stage_models_name_every_stage_and_swap_with_the_world_model(
    trained: TrainResult,
) -> None:
    assistant = _assistant(trained)
    assert assistant.stage_models() == {
        "llm": ("booking-intent-rules", "1"),
        "world_model": ("booking-world-model", "3"),
        "planner": ("mpc-planner", "1"),
    }
    other = BookingAssistant(WorldModel(WorldModelConfig()), "booking-world-model", "4")
    assert other.stage_models()["world_model"] == ("booking-world-model", "4")


def test_each_stage_is_a_separate_call(
    trained: TrainResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    assistant = _assistant(trained)
    calls: list[str] = []
    for stage in ("_parse", "_rollout", "_decide"):
        original = getattr(assistant, stage)

        def wrapped(*args: object, _name: str = stage, _f: object = original) -> object:
            calls.append(_name)
            return _f(*args)  # type: ignore[operator]

        monkeypatch.setattr(assistant, stage, wrapped)
    assistant.handle("a room for 4 people tomorrow 10-11am")
    assert calls == ["_parse", "_rollout", "_decide"]
    calls.clear()
    assistant.handle("a room tomorrow")
    assert calls == ["_parse"]


class _BrokenParser:
    system, model, version = "openai", "tiny-llm", "tiny-llm"
    last_usage = TokenUsage()

    def parse(self, text: str) -> Intent:
        raise IntentParseError("the language model answered HTTP 503")


def test_a_failing_language_model_becomes_a_clarification(trained: TrainResult) -> None:
    assistant = BookingAssistant(trained.model, "booking-world-model", "3", parser=_BrokenParser())
    answer = assistant.handle("a room for 4 people tomorrow 10-11am")
    assert answer.kind == "clarify"
    assert "HTTP 503" in answer.decision.rationale
    assert "rephrase" in answer.message


def test_rollout_is_deterministic(trained: TrainResult) -> None:
    a, b = _assistant(trained), _assistant(trained)
    a.commit_bookings = b.commit_bookings = False
    text = "need space for 12 on Friday at 10 for 2 hours with video"
    first, second = a.handle(text), b.handle(text)
    assert first.decision.to_record() == second.decision.to_record()
    scores = np.array([c.score for c in first.decision.candidates])
    assert np.isfinite(scores).all()


def _occupancy_along(trained: TrainResult, churn: bool, n: int = 1200) -> list[float]:
    """The calendar's booked share of opening hours after each of `n` generated requests."""
    assistant, others = _assistant(trained, seed=0), np.random.default_rng(3)
    along = []
    for generated in generate_requests(n, seed=11):
        assistant.handle(generated.text)
        if churn:
            assistant.calendar.churn(others)
        along.append(float(assistant.calendar.busy[:, :, 8:20].mean()))
    return along


def test_with_other_peoples_churn_the_calendar_holds_a_steady_state(
    trained: TrainResult,
) -> None:
    # What `warden demo` serves: without churn every booking stays, so the calendar fills as
    # a run goes (and a drift detector would rightly see its early and late traffic differ);
    # with churn it holds the generated occupancy plus the assistant's recent bookings.
    start = float(Calendar.generate(seed=0).busy[:, :, 8:20].mean())
    filling = _occupancy_along(trained, churn=False)
    steady = _occupancy_along(trained, churn=True)
    assert filling[-1] > start + 0.2
    early, late = np.mean(steady[100:400]), np.mean(steady[-300:])
    assert abs(late - early) < 0.01 and abs(late - start) < 0.03, (start, early, late)
