"""Decision summaries computed at ingest: what decision drift reads instead of candidates."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from app.ingest.decision_summary import summarise
from app.store.tables import PlannerDecision
from tests import otlp
from tests.conftest import LiveService


def test_summary_of_a_decision() -> None:
    candidates = [
        {"action": "b", "score": 1.0, "feasible": True},
        {"action": "a", "score": 3.0, "feasible": True},
        {"action": "c", "score": 2.0, "feasible": False},
    ]
    found = summarise(candidates, "b")
    assert found["chosen_score"] == 1.0  # the chosen one's, not the best
    assert found["margin"] == 1.0 and found["n_candidates"] == 3
    assert found["constraints_bound"] is True
    weights = [math.exp(s - 3.0) for s in (1.0, 3.0, 2.0)]
    p = [w / sum(weights) for w in weights]
    assert found["entropy"] == pytest.approx(-sum(x * math.log(x) for x in p))


@pytest.mark.parametrize(
    ("candidates", "chosen", "expected"),
    [
        ([], None, {"chosen_score": None, "margin": None, "entropy": None, "n_candidates": 0,
                    "constraints_bound": None}),
        ([{"action": "a", "score": 0.5}], "a", {"chosen_score": 0.5, "margin": None,
                                                "entropy": 0.0, "constraints_bound": None}),
        # Scores that are not numbers are left out, not guessed.
        ([{"action": "a", "score": "high"}, {"action": "b", "score": True}, "junk"], "a",
         {"chosen_score": None, "margin": None, "entropy": None, "n_candidates": 3}),
        ([{"action": "a", "score": 2.0}], "zzz", {"chosen_score": None}),
    ],
)  # fmt: skip
def test_what_cannot_be_told_is_none(
    candidates: list[object], chosen: str | None, expected: dict[str, object]
) -> None:
    found = summarise(candidates, chosen)
    assert {k: found[k] for k in expected} == expected


def test_ingest_stores_the_summary_with_the_decision(live: LiveService) -> None:
    key = live.key("booking", "ingest")
    trace = otlp.hybrid_trace(otlp.Ids(7))
    with live.client(key) as client:
        body = otlp.request(trace).SerializeToString()
        client.post("/v1/traces", content=body, headers=otlp.PROTOBUF).raise_for_status()
    with live.engine.connect() as conn:
        row = conn.execute(select(PlannerDecision)).one()
    assert (row.chosen_score, row.margin, row.n_candidates) == (0.9, pytest.approx(0.5), 2)
    assert row.entropy == pytest.approx(summarise(row.candidates, row.chosen)["entropy"])
