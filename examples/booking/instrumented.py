"""The booking assistant with Warden's SDK around its stages.

Nothing of the assistant's logic changes: the subclass wraps the language-model stage in
`collectors.llm_call`, the world model is watched by forward hooks on its encoder and
transition, and each answer is recorded as one request with the planner's whole decision.
"""

from __future__ import annotations

from typing import Any

import collectors

from .sim import Intent
from .stack import Answer, BookingAssistant

WATCHED_LAYERS = ["encoder", "transition"]


class InstrumentedAssistant(BookingAssistant):
    """A `BookingAssistant` whose every request is recorded by Warden.

    >>> assistant = InstrumentedAssistant(model, "booking-world-model", "3")  # doctest: +SKIP
    >>> assistant.handle("a room for 6 tomorrow 3-5pm", subject="u-17").kind  # doctest: +SKIP
    'booked'
    """

    def __init__(self, *args: Any, dim: int = 16, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for role, (name, version) in self.stage_models().items():
            collectors.model(role, name, version)
        self.watch = collectors.watch(self.world_model, layers=WATCHED_LAYERS, dim=dim)

    def handle(
        self, text: str, subject: str | None = None, request_id: str | None = None
    ) -> Answer:
        with collectors.request({"text": text}, subject, request_id=request_id) as req:
            answer = super().handle(text)
            record = answer.decision.to_record()
            collectors.decision(
                candidates=record["candidates"],
                chosen=record["chosen"],
                constraints=record["constraints"],
                rationale=record["rationale"],
                confidence=record["confidence"],
            )
            req.set_outcome(answer.kind)
        return answer

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
        return intent

    def close(self) -> None:
        self.watch.remove()
