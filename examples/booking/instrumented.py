"""The booking assistant with Warden's SDK around its stages.

Nothing of the assistant's logic changes: the subclass wraps the language-model stage in
`collectors.llm_call`, the world model is watched by forward hooks on its encoder and
transition, and each answer is recorded as one request with the planner's whole decision.
"""

from __future__ import annotations

from typing import Any

import collectors

from .planner import Decision
from .sim import Action, Intent, intent_features
from .stack import _NO_INTENT, Answer, BookingAssistant
from .world_model import Prediction

WATCHED_LAYERS = ["encoder", "transition"]


class InstrumentedAssistant(BookingAssistant):
    """A `BookingAssistant` whose every request is recorded by Warden.

    >>> assistant = InstrumentedAssistant(model, "booking-world-model", "3")  # doctest: +SKIP
    >>> assistant.handle("a room for 6 tomorrow 3-5pm", subject="u-17").kind  # doctest: +SKIP
    'booked'
    """

    def __init__(
        self,
        *args: Any,
        dim: int = 16,
        hand_over: bool = True,
        declare_models: bool = True,
        watched: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Whether a policy's deny becomes a hand-over answer, or reaches the caller (a gateway
        # that answers 403).
        self.hand_over = hand_over
        # Both False when the caller does it per request and per loaded version instead (the
        # experiments' assistant, examples/booking/experiments.py): one watch per model, or
        # every state would be captured twice.
        if declare_models:
            for role, (name, version) in self.stage_models().items():
                collectors.model(role, name, version)
        self.watch: collectors.Watch | None = (
            collectors.watch(self.world_model, layers=WATCHED_LAYERS, dim=dim) if watched else None
        )
        self._recorded = False
        self._last_decision: Decision | None = None
        self._last_intent: Intent = _NO_INTENT

    def handle(
        self, text: str, subject: str | None = None, request_id: str | None = None
    ) -> Answer:
        with collectors.request({"text": text}, subject, request_id=request_id) as req:
            self._recorded = False
            self._last_intent = _NO_INTENT
            self._last_decision = None
            try:
                answer = super().handle(text)
            except collectors.PolicyDenied as denied:
                if not self.hand_over:
                    raise
                # The gate refused the request before anything was booked: a person takes
                # over (a deny on the parsed intent comes before any decision was made).
                decision = self._last_decision or self.planner.clarify(
                    self._last_intent, [denied.message]
                )
                return Answer(
                    "handed_over",
                    f"A colleague will get back to you: {denied.message}",
                    decision,
                    self._last_intent,
                )
            if not self._recorded:  # a clarifying question never reached the planner
                self._record(answer.decision)
            req.set_outcome(answer.kind)
        return answer

    def _decide(
        self, intent: Intent, candidates: list[Action], predictions: list[Prediction]
    ) -> Decision:
        decision = super()._decide(intent, candidates, predictions)
        self._last_decision, self._last_intent = decision, intent
        self._record(decision)  # the post_decision gates run here, before any booking
        return decision

    def _record(self, decision: Decision) -> None:
        self._recorded = True
        record = decision.to_record()
        collectors.decision(
            candidates=record["candidates"],
            chosen=record["chosen"],
            constraints=record["constraints"],
            rationale=record["rationale"],
            confidence=record["confidence"],
        )

    def _parse(self, text: str) -> Intent:
        parser = self.parser
        with collectors.llm_call(system=parser.system, request_model=parser.model) as call:
            intent = super()._parse(text)
            usage = parser.last_usage
            call.record(
                response_model=parser.model,
                input_tokens=usage.input_tokens if usage else None,
                output_tokens=usage.output_tokens if usage else None,
            )
        # Named as the training dataset's columns, so that dataset is the input-drift reference.
        collectors.features(intent_features(intent))
        self._last_intent = intent
        # The policies on the intent (input-limits' people and hours) judge it now, before the
        # world model and the planner run: a deny raises here.
        collectors.intent(
            {
                "people": intent.people,
                "day_offset": intent.day_offset,
                "start_hour": intent.start_hour,
                "duration_hours": intent.duration_hours,
                "equipment": sorted(intent.equipment),
            }
        )
        return intent

    def close(self) -> None:
        if self.watch is not None:
            self.watch.remove()
