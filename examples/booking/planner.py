"""Model-predictive planning: propose candidate bookings, score the world model's predictions,
and decide to book, to counter-propose, or to ask the user to clarify.

The planner never calls the world model itself: `propose` gives the candidates, the caller
rolls them out (one batched forward), and `decide` takes the predictions. That keeps the three
stages of the stack separately visible to instrumentation.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np

from .sim import (
    CLOSE_HOUR,
    MAX_DURATION,
    OPEN_HOUR,
    Action,
    Calendar,
    Intent,
    sample_actions,
)
from .world_model import Prediction

# `handed_over`: a policy gate refused the decision and a person takes the request.
DecisionKind = Literal["booked", "counter_proposal", "clarify", "handed_over"]

_QUESTIONS = {
    "people": "how many people will attend",
    "day_offset": "which day it is for",
    "start_hour": "what time it should start",
    "duration_hours": "how long you need the room",
}


@dataclass(frozen=True)
class PlannerWeights:
    """score = -conflict * p(conflict) - cost * cost / 100 + fit * utilisation fit.

    The fit is 1 at `target_utilisation` and falls linearly to 0 for an empty room and for
    twice the target, so a group is put neither in a hall (wasted) nor a cupboard (cramped).
    """

    conflict: float = 4.0
    cost: float = 1.0
    fit: float = 1.0
    target_utilisation: float = 0.7

    def fit_of(self, utilisation: float) -> float:
        return 1.0 - min(abs(utilisation - self.target_utilisation) / self.target_utilisation, 1.0)


@dataclass(frozen=True)
class Candidate:
    """One proposed booking with its predicted outcome, score and constraint check."""

    action: Action
    label: str
    score: float
    predicted: Prediction
    violations: tuple[str, ...] = ()

    @property
    def feasible(self) -> bool:
        return not self.violations

    def to_record(self) -> dict[str, Any]:
        return {
            "action": self.label,
            "score": round(self.score, 6),
            "predicted": self.predicted.to_dict(),
            "feasible": self.feasible,
        }


@dataclass(frozen=True)
class Decision:
    """The planner's answer to one intent, with every candidate it considered."""

    kind: DecisionKind
    candidates: list[Candidate]
    chosen: Candidate | None
    constraints: list[str]
    confidence: float
    rationale: str
    requested_slot: str | None = None
    missing: list[str] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        """The decision as the `planner.*` span attributes carry it (JSON-ready).

        >>> Decision("clarify", [], None, [], 0.0, "missing: people").to_record()["chosen"] is None
        True
        """
        return {
            "candidates": [c.to_record() for c in self.candidates],
            "chosen": self.chosen.label if self.chosen else None,
            "constraints": list(self.constraints),
            "rationale": self.rationale,
            "confidence": round(self.confidence, 6),
        }


def slot_label(day_offset: int, start_hour: int, duration: int, start_date: date) -> str:
    """A slot without a room, e.g. `2026-11-24T15:00/2h`."""
    day = start_date + timedelta(days=day_offset)
    return f"{day.isoformat()}T{start_hour:02d}:00/{duration}h"


class Planner:
    """Samples `n_candidates` actions per request (seeded by the request) and picks the best.

    >>> planner = Planner()
    >>> planner.name, planner.version
    ('mpc-planner', '1')
    """

    name = "mpc-planner"
    version = "1"

    def __init__(
        self,
        n_candidates: int = 16,
        weights: PlannerWeights | None = None,
        max_conflict: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.n_candidates = n_candidates
        self.weights = weights or PlannerWeights()
        self.max_conflict = max_conflict
        self.seed = seed

    def problems(self, intent: Intent, calendar: Calendar) -> list[str]:
        """Why the intent cannot be planned as it is: missing or out-of-range fields."""
        problems = [f"missing {name}" for name in intent.missing()]
        if intent.day_offset is not None and not 0 <= intent.day_offset < calendar.days:
            problems.append(f"day must be within the next {calendar.days} days")
        if intent.duration_hours is not None and intent.duration_hours > MAX_DURATION:
            problems.append(f"bookings last at most {MAX_DURATION} hours")
        if intent.start_hour is not None and not OPEN_HOUR <= intent.start_hour < CLOSE_HOUR:
            problems.append(f"rooms open {OPEN_HOUR:02d}:00-{CLOSE_HOUR:02d}:00")
        return problems

    def constraints(self, intent: Intent) -> list[str]:
        """The hard constraints every chosen action must satisfy, as readable strings."""
        out = [f"capacity >= {intent.people}"]
        out += [f"equipment includes {e}" for e in sorted(intent.equipment)]
        out.append(f"within opening hours {OPEN_HOUR:02d}:00-{CLOSE_HOUR:02d}:00")
        out.append(f"predicted conflict_probability <= {self.max_conflict}")
        return out

    def propose(self, intent: Intent, calendar: Calendar) -> list[Action]:
        """Candidate actions for a complete intent; the same intent gets the same candidates."""
        digest = hashlib.sha256(json.dumps(intent.to_dict(), sort_keys=True).encode()).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(digest[:8], "big")])
        return sample_actions(intent, calendar, self.n_candidates, rng)

    def clarify(self, intent: Intent, problems: list[str]) -> Decision:
        """A decision that asks the user instead of acting (nothing was rolled out)."""
        return Decision(
            kind="clarify",
            candidates=[],
            chosen=None,
            constraints=[],
            confidence=0.0,
            rationale="cannot plan: " + "; ".join(problems),
            missing=intent.missing(),
        )

    def decide(
        self,
        intent: Intent,
        calendar: Calendar,
        actions: list[Action],
        predictions: list[Prediction],
    ) -> Decision:
        """Score every candidate, apply the constraints, and choose.

        Booked: the best-scoring feasible candidate on the requested day, with the requested
        duration, within the user's flexibility of the requested start. Counter-proposal:
        no such candidate is feasible, so the best-scoring feasible one elsewhere. Clarify:
        no candidate is feasible.
        """
        if len(actions) != len(predictions):
            raise ValueError(f"{len(actions)} actions but {len(predictions)} predictions")
        assert intent.people is not None and intent.day_offset is not None
        assert intent.start_hour is not None and intent.duration_hours is not None
        candidates = [
            self._candidate(intent, calendar, a, p)
            for a, p in zip(actions, predictions, strict=True)
        ]
        requested = slot_label(
            intent.day_offset, intent.start_hour, intent.duration_hours, calendar.start_date
        )
        constraints = self.constraints(intent)
        feasible = sorted((c for c in candidates if c.feasible), key=lambda c: -c.score)
        if not feasible:
            return Decision(
                kind="clarify",
                candidates=candidates,
                chosen=None,
                constraints=constraints,
                confidence=0.0,
                rationale=f"none of {len(candidates)} candidates meets the constraints "
                f"({self._commonest_violation(candidates)})",
                requested_slot=requested,
            )
        # What the user asked for comes first: a slot outside their flexibility is only
        # proposed when nothing inside it is feasible, however well it scores.
        acceptable = [c for c in feasible if self._within_request(intent, c.action)]
        ranked = acceptable or feasible
        best = ranked[0]
        within = bool(acceptable)
        margin = best.score - ranked[1].score if len(ranked) > 1 else math.inf
        p = best.predicted
        summary = (
            f"{best.label}: predicted conflict {p.conflict_probability:.2f}, "
            f"utilisation {p.utilisation:.2f}, cost {p.cost:.0f}; best of {len(feasible)} "
            f"feasible of {len(candidates)} candidates"
            + (f" (score margin {margin:.2f})" if math.isfinite(margin) else "")
        )
        return Decision(
            kind="booked" if within else "counter_proposal",
            candidates=candidates,
            chosen=best,
            constraints=constraints,
            # The planner's belief that the booking will stand: the world model's P(no conflict).
            confidence=1.0 - p.conflict_probability,
            rationale=summary if within else f"requested {requested} not feasible; {summary}",
            requested_slot=requested,
        )

    @staticmethod
    def _within_request(intent: Intent, action: Action) -> bool:
        assert intent.start_hour is not None
        return (
            action.day_offset == intent.day_offset
            and action.duration_hours == intent.duration_hours
            and abs(action.start_hour - intent.start_hour) <= intent.flexibility_hours
        )

    def _candidate(
        self, intent: Intent, calendar: Calendar, action: Action, predicted: Prediction
    ) -> Candidate:
        assert intent.people is not None
        room = calendar.rooms[action.room]
        violations = []
        if room.capacity < intent.people:
            violations.append(f"capacity {room.capacity} < {intent.people}")
        violations += [f"no {e}" for e in sorted(intent.equipment - room.equipment)]
        if (
            not OPEN_HOUR
            <= action.start_hour
            < action.start_hour + action.duration_hours
            <= (CLOSE_HOUR)
        ):
            violations.append("outside opening hours")
        if predicted.conflict_probability > self.max_conflict:
            violations.append(f"conflict_probability {predicted.conflict_probability:.2f}")
        w = self.weights
        score = (
            -w.conflict * predicted.conflict_probability
            - w.cost * predicted.cost / 100.0
            + w.fit * w.fit_of(predicted.utilisation)
        )
        return Candidate(
            action, action.label(calendar.start_date), score, predicted, tuple(violations)
        )

    @staticmethod
    def _commonest_violation(candidates: list[Candidate]) -> str:
        kinds: dict[str, int] = {}
        for c in candidates:
            for v in c.violations:
                key = v.split(" ")[0] if not v.startswith("no ") else v
                kinds[key] = kinds.get(key, 0) + 1
        if not kinds:
            return "no candidates"
        worst = max(kinds, key=lambda k: kinds[k])
        return f"most often: {worst}, {kinds[worst]} of {len(candidates)}"


def questions_for(missing: list[str]) -> list[str]:
    """Plain-language questions for missing intent fields, in the intent's field order.

    >>> questions_for(["people", "start_hour"])
    ['how many people will attend', 'what time it should start']
    """
    return [_QUESTIONS[m] for m in missing if m in _QUESTIONS]
