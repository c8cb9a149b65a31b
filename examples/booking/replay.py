"""Counterfactual replay: would another world-model version have decided differently?

A stored request's input goes through the booking assistant twice, on the same fresh calendar,
once with the world-model version that served it and once with another version loaded from
MLflow; nothing is booked and nothing is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from .planner import Decision
from .registry import load_world_model
from .stack import BookingAssistant


@dataclass(frozen=True)
class Replayed:
    name: str
    version: str
    kind: str
    decision: Decision


def replay(text: str, tracking_uri: str, versions: list[tuple[str, str]]) -> list[Replayed]:
    """Answer `text` once per (model name, version), each on the same fresh calendar."""
    out = []
    for name, version in versions:
        loaded = load_world_model(tracking_uri, f"models:/{name}/{version}")
        assistant = BookingAssistant(loaded.model, name, version, commit_bookings=False)
        answer = assistant.handle(text)
        out.append(Replayed(name, version, answer.kind, answer.decision))
    return out
