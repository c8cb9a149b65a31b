"""Counterfactual replay: would another world-model version have decided differently?

A stored request's input goes through the booking assistant twice, on the same fresh calendar,
once with the world-model version that served it and once with another version loaded from
MLflow; nothing is booked and nothing is recorded. `replay` is the entry point `warden replay`
reaches through `WARDEN_REPLAY` (default `examples.booking.replay:replay`; the contract it
meets is `Replay` in app/cli/demo.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from .planner import Decision
from .registry import load_world_model
from .stack import BookingAssistant


def replay(input: Any, tracking_uri: str, versions: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Answer a request's input (`{"text": ...}`, as the demo sends it) once per (model name,
    version), each on the same fresh calendar: per version its name, version, the answer's
    kind and the decision (`exact_record`).

        replay({"text": "a room for 6 tomorrow 3-5pm"}, "sqlite:///.warden/mlflow.db",
               [("booking-world-model", "3"), ("booking-world-model", "4")])
    """
    text = str(input.get("text", "")) if isinstance(input, Mapping) else str(input)
    out = []
    for name, version in versions:
        loaded = load_world_model(tracking_uri, f"models:/{name}/{version}")
        assistant = BookingAssistant(loaded.model, name, version, commit_bookings=False)
        answer = assistant.handle(text)
        out.append(
            {
                "name": name,
                "version": version,
                "kind": answer.kind,
                "decision": exact_record(answer.decision),
            }
        )
    return out


def exact_record(decision: Decision) -> dict[str, Any]:
    """`decision.to_record()` (the `planner.*` attributes) with its figures unrounded and the
    best candidate first: a comparison is printed rounded once, from what the models computed.

    >>> exact_record(Decision("clarify", [], None, [], 0.1234567, "missing: people"))["confidence"]
    0.1234567
    """
    record = decision.to_record()
    entries = [
        {**entry, "score": candidate.score, "predicted": asdict(candidate.predicted)}
        for candidate, entry in zip(decision.candidates, record["candidates"], strict=True)
    ]
    record["candidates"] = sorted(entries, key=lambda entry: entry["score"], reverse=True)
    record["confidence"] = decision.confidence
    return record
