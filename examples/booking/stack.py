"""The booking assistant: language model -> world model -> planner, one request at a time.

Each stage is its own method (`_parse`, `_rollout`, `_decide`) so instrumentation can wrap it
without touching the logic, and `stage_models()` names the model version behind each stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import nn

from .errors import IntentParseError
from .intent import IntentParser, OfflineParser
from .planner import Decision, DecisionKind, Planner, questions_for
from .sim import Action, Calendar, Intent
from .world_model import Prediction, Rollout, rollout_inputs

_NO_INTENT = Intent(people=None, day_offset=None, start_hour=None, duration_hours=None)


@dataclass(frozen=True)
class Answer:
    """What the assistant says back, and the decision behind it."""

    kind: DecisionKind
    message: str
    decision: Decision
    intent: Intent


class BookingAssistant:
    """Answers booking requests with a booking, a counter-proposal or a question.

    The world model comes in already loaded, with the registry name and version it was loaded
    as, so another version can be swapped in by building another assistant.

    >>> from examples.booking.world_model import WorldModel, WorldModelConfig
    >>> assistant = BookingAssistant(WorldModel(WorldModelConfig()), "booking-world-model", "1")
    >>> assistant.stage_models()["world_model"]
    ('booking-world-model', '1')
    """

    def __init__(
        self,
        world_model: nn.Module,
        world_model_name: str,
        world_model_version: str,
        *,
        parser: IntentParser | None = None,
        planner: Planner | None = None,
        calendar: Calendar | None = None,
        commit_bookings: bool = True,
    ) -> None:
        self.calendar = calendar or Calendar.generate(seed=0)
        self.parser: IntentParser = parser or OfflineParser(today=self.calendar.start_date)
        self.planner = planner or Planner()
        self.world_model = world_model.eval()
        self.world_model_name = world_model_name
        self.world_model_version = str(world_model_version)
        self.commit_bookings = commit_bookings

    def stage_models(self) -> dict[str, tuple[str, str]]:
        """The (name, version) serving each stage: `llm`, `world_model`, `planner`."""
        return {
            "llm": (self.parser.model, self.parser.version),
            "world_model": (self.world_model_name, self.world_model_version),
            "planner": (self.planner.name, self.planner.version),
        }

    def handle(self, text: str) -> Answer:
        """Answer one request.

        A confirmed booking is written into the calendar (unless `commit_bookings` is False),
        so later requests see the room as taken.
        """
        try:
            intent = self._parse(text)
        except IntentParseError as exc:
            decision = self.planner.clarify(_NO_INTENT, [f"could not read the request: {exc}"])
            message = "Sorry, I could not read that request. Could you rephrase it?"
            return Answer(decision.kind, message, decision, _NO_INTENT)
        problems = self.planner.problems(intent, self.calendar)
        if problems:
            return self._answer(self.planner.clarify(intent, problems), intent)
        candidates = self._propose(intent)
        predictions = self._rollout(intent, candidates)
        decision = self._decide(intent, candidates, predictions)
        if decision.kind == "booked" and decision.chosen and self.commit_bookings:
            self.calendar.book(decision.chosen.action)
        return self._answer(decision, intent)

    def _parse(self, text: str) -> Intent:
        return self.parser.parse(text)

    def _propose(self, intent: Intent) -> list[Action]:
        return self.planner.propose(intent, self.calendar)

    def _rollout(self, intent: Intent, candidates: list[Action]) -> list[Prediction]:
        state, action = rollout_inputs(intent, candidates, self.calendar)
        with torch.no_grad():
            out: Rollout = self.world_model(state, action)
        return out.predictions()

    def _decide(
        self, intent: Intent, candidates: list[Action], predictions: list[Prediction]
    ) -> Decision:
        return self.planner.decide(intent, self.calendar, candidates, predictions)

    def _answer(self, decision: Decision, intent: Intent) -> Answer:
        return Answer(decision.kind, self._message(decision, intent), decision, intent)

    def _message(self, decision: Decision, intent: Intent) -> str:
        chosen = decision.chosen
        if decision.kind == "clarify" or chosen is None:
            questions = questions_for(decision.missing)
            if questions:
                return "Could you tell me " + " and ".join(questions) + "?"
            if decision.candidates:
                return (
                    "I could not find a suitable room around that time. Could you try another "
                    "time or day, or a smaller group?"
                )
            return f"I could not plan that booking ({decision.rationale}). Could you rephrase?"
        action = chosen.action
        room = self.calendar.rooms[action.room]
        day = self.calendar.start_date + timedelta(days=action.day_offset)
        when = (
            f"{day:%a %d %b} {action.start_hour:02d}:00-"
            f"{action.start_hour + action.duration_hours:02d}:00"
        )
        kit = ", ".join(sorted(room.equipment)) or "no equipment"
        where = f"{room.id} (floor {room.floor}, {room.capacity} seats, {kit})"
        if decision.kind == "booked":
            return f"Booked {where} on {when}."
        return (
            f"The requested slot ({decision.requested_slot}) is not available for "
            f"{intent.people} people. How about {where} on {when}? Reply yes to book it."
        )
