"""What drift needs of a planner decision, computed once at ingest.

Decision drift compares the chosen candidate's score, the margin between the best and the
runner-up, the entropy of the candidate set and whether a constraint bound. Computing them at
ingest keeps the drift job from parsing every decision's candidate list again on each run
(the candidates stay stored whole, for the trace view and exports).
"""

from __future__ import annotations

import math
from typing import Any


def _score(candidate: Any) -> float | None:
    if not isinstance(candidate, dict):
        return None
    value = candidate.get("score")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def summarise(candidates: list[Any], chosen: str | None) -> dict[str, Any]:
    """`chosen_score`, `margin` (best minus runner-up score), `entropy` (nats, of the
    softmax over the scores), `n_candidates` and `constraints_bound` (some candidate was
    ruled out: `feasible: false`, docs/conventions.md); None where it cannot be told.

    >>> summarise([{"action": "a", "score": 2.0}, {"action": "b", "score": 1.0,
    ...             "feasible": False}], "a")  # doctest: +ELLIPSIS
    {'chosen_score': 2.0, 'margin': 1.0, 'entropy': 0.582..., 'n_candidates': 2, \
'constraints_bound': True}
    """
    scores = [s for s in map(_score, candidates) if s is not None]
    ranked = sorted(scores, reverse=True)
    entropy = None
    if scores:
        top = ranked[0]
        weights = [math.exp(s - top) for s in scores]
        total = sum(weights)
        entropy = -sum((w / total) * math.log(w / total) for w in weights if w > 0)
    chosen_score = None
    if chosen is not None:
        chosen_score = next(
            (_score(c) for c in candidates if isinstance(c, dict) and c.get("action") == chosen),
            None,
        )
    has_feasibility = any(isinstance(c, dict) and "feasible" in c for c in candidates)
    return {
        "chosen_score": chosen_score,
        "margin": ranked[0] - ranked[1] if len(ranked) >= 2 else None,
        "entropy": entropy,
        "n_candidates": len(candidates),
        "constraints_bound": (
            any(isinstance(c, dict) and c.get("feasible") is False for c in candidates)
            if has_feasibility
            else None
        ),
    }
