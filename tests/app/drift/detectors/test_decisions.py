"""Decision drift: quiet on unchanged decisions, and each kind of change found by its test."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from app.drift.detectors.decisions import MIN_SAMPLES, decision_drift
from app.drift.detectors.sample import DecisionSample, action_kind

KINDS = ("book", "counter_proposal", "clarify", "deny")
MIX = (0.6, 0.25, 0.1, 0.05)


def decisions(
    rng: np.random.Generator,
    n: int,
    *,
    mix: tuple[float, ...] = MIX,
    margin_scale: float = 1.0,
    bind_rate: float = 0.2,
) -> list[dict[str, Any]]:
    """Planner decisions as the SDK reports them: the best candidate is chosen, its runner-up
    is `margin` behind (exponential with mean `margin_scale`), and the rest further."""
    rows = []
    for _ in range(n):
        kind = str(rng.choice(KINDS, p=mix))
        best = float(rng.normal(2.0, 0.5))
        runner_up = best - float(rng.exponential(margin_scale))
        others = runner_up - rng.exponential(1.0, size=int(rng.integers(0, 3)))
        scores = [best, runner_up, *others.tolist()]
        labels = [f"{kind}:room-{rng.integers(1, 30):02d}@{rng.integers(8, 18)}:00"] + [
            f"{rng.choice(KINDS)}:room-{rng.integers(1, 30):02d}@{rng.integers(8, 18)}:00"
            for _ in scores[1:]
        ]
        rows.append(
            {
                "chosen": labels[0],
                "candidates": [
                    {"action": a, "score": s, "predicted": {}}
                    for a, s in zip(labels, scores, strict=True)
                ],
                "constraints": [
                    {"name": "capacity", "bound": bool(rng.random() < bind_rate)},
                    {"name": "hours", "bound": False},
                ],
                "confidence": float(rng.beta(8, 2)),
            }
        )
    return rows


def sample(rng: np.random.Generator, n: int = 500, **change: Any) -> DecisionSample:
    return DecisionSample.from_decisions(decisions(rng, n, **change))


def test_unchanged_decisions_are_not_drift() -> None:
    rng = np.random.default_rng(1)
    result = decision_drift(sample(rng), sample(rng))
    assert result.verdict == "none"
    assert result.reasons == ()
    assert {t.name for t in result.tests} == {
        "chi2:kind", "psi:kind", "psi:score", "ks:score", "ks:confidence", "ks:margin",
        "ks:entropy", "proportion:constraints_bound",
    }  # fmt: skip
    assert result.skipped == ()


def test_false_positives_stay_under_five_percent_over_the_tests() -> None:
    rng = np.random.default_rng(2)

    def arrays(n: int) -> DecisionSample:
        return DecisionSample(
            chosen=[f"{kind}:x" for kind in rng.choice(KINDS, n, p=MIX)],
            score=rng.normal(2.0, 0.5, n),
            confidence=rng.beta(8, 2, n),
            margin=rng.exponential(1.0, n),
            entropy=rng.gamma(2.0, 0.4, n),
            constraints_bound=rng.random(n) < 0.2,
        )

    verdicts = [decision_drift(arrays(300), arrays(300)).verdict for _ in range(200)]
    # Holm keeps "warn" or "drift" at 5% and "drift" at 1% (8 tests uncorrected: about 30%).
    assert verdicts.count("warn") + verdicts.count("drift") <= 16
    assert verdicts.count("drift") <= 6


def test_a_changed_mix_of_action_kinds_is_drift_for_the_chi_square_test() -> None:
    rng = np.random.default_rng(3)
    result = decision_drift(sample(rng), sample(rng, mix=(0.4, 0.25, 0.25, 0.1)))
    assert result.verdict == "drift"
    assert result.reasons[0] in {"chi2:kind", "psi:kind"}
    assert set(result.reasons) <= {"chi2:kind", "psi:kind"}
    chi2 = result.test("chi2:kind")
    assert chi2.verdict == "drift"
    assert chi2.reference["book"] == pytest.approx(0.6, abs=0.06)
    assert chi2.current["book"] == pytest.approx(0.4, abs=0.06)


def test_a_margin_collapse_is_found_by_the_ks_test_on_margins() -> None:
    rng = np.random.default_rng(4)
    result = decision_drift(sample(rng), sample(rng, margin_scale=0.5))
    assert result.verdict == "drift"
    assert result.test("ks:margin").verdict == "drift"
    assert result.test("ks:margin").current["median"] < result.test("ks:margin").reference["median"]
    assert "chi2:kind" not in result.reasons


def test_a_change_in_how_often_constraints_bind_is_found() -> None:
    rng = np.random.default_rng(5)
    result = decision_drift(sample(rng), sample(rng, bind_rate=0.35))
    assert result.verdict == "drift"
    test = result.test("proportion:constraints_bound")
    assert test.method == "two_proportion_z"
    assert test.verdict == "drift"
    assert test.reference["rate"] == pytest.approx(0.2, abs=0.05)
    assert test.current["rate"] == pytest.approx(0.35, abs=0.05)
    assert set(result.reasons) == {"proportion:constraints_bound"}


def test_holm_adjusted_p_values_are_never_below_the_raw_ones() -> None:
    rng = np.random.default_rng(6)
    result = decision_drift(sample(rng), sample(rng, bind_rate=0.3, margin_scale=0.8))
    for test in result.tests:
        assert test.p_value <= test.adjusted_p <= 1.0
    smallest = min(result.tests, key=lambda t: t.p_value)
    assert smallest.adjusted_p == pytest.approx(min(1.0, len(result.tests) * smallest.p_value))


def test_margin_entropy_and_score_are_computed_from_the_candidates() -> None:
    rows = [
        {
            "chosen": "book:room-02@10",
            "candidates": json.dumps(
                [
                    {"action": "book:room-01@10", "score": 2.0},
                    {"action": "book:room-02@10", "score": 1.0},
                    {"action": "clarify", "score": 0.0},
                ]
            ),
            "constraints": [{"name": "capacity", "bound": True}],
            "confidence": None,
        },
        {"chosen": None, "candidates": [{"action": "deny", "score": 0.5}], "constraints": []},
        {"chosen": "clarify", "candidates": [], "margin": 0.25, "entropy": 1.5, "score": 3.0},
    ]
    found = DecisionSample.from_decisions(rows)
    scores = np.array([2.0, 1.0, 0.0])
    p = np.exp(scores) / np.exp(scores).sum()
    assert list(found.chosen) == ["book:room-02@10", "(none)", "clarify"]
    assert np.asarray(found.score)[0] == 1.0  # the chosen one's, not the best
    assert np.asarray(found.margin)[0] == 1.0
    assert np.asarray(found.entropy)[0] == pytest.approx(float(-(p * np.log(p)).sum()))
    assert math.isnan(np.asarray(found.confidence)[0])
    assert list(np.asarray(found.constraints_bound)) == [True, False, False]
    # One candidate: no runner-up, so no margin, and a certain choice.
    assert math.isnan(np.asarray(found.margin)[1])
    assert np.asarray(found.entropy)[1] == 0.0
    # Values given in the row win over computed ones.
    assert (np.asarray(found.margin)[2], np.asarray(found.entropy)[2]) == (0.25, 1.5)
    assert np.asarray(found.score)[2] == 3.0


def test_action_kinds_ignore_the_room_and_the_time() -> None:
    assert action_kind("book:room-a@10") == "book"
    assert action_kind("room-03@2026-11-24T15:00/2h") == "room-03"
    assert action_kind("clarify") == "clarify"


def test_rare_kinds_are_pooled_before_the_chi_square_test() -> None:
    rng = np.random.default_rng(7)
    reference, current = decisions(rng, 200), decisions(rng, 200)
    for i, row in enumerate(reference[:6] + current[:6]):
        row["chosen"] = f"rare-{i}:x"
    result = decision_drift(
        DecisionSample.from_decisions(reference), DecisionSample.from_decisions(current)
    )
    chi2 = result.test("chi2:kind")
    assert "(other)" in chi2.reference
    assert not any(kind.startswith("rare-") for kind in chi2.reference)
    assert result.verdict == "none"


def test_a_field_nobody_reported_is_skipped_not_tested() -> None:
    rng = np.random.default_rng(8)
    reference, current = decisions(rng, 100), decisions(rng, 100)
    for row in reference + current:
        row["confidence"] = None
    result = decision_drift(
        DecisionSample.from_decisions(reference), DecisionSample.from_decisions(current)
    )
    assert "ks:confidence" not in {t.name for t in result.tests}
    assert any(reason.startswith("ks:confidence") for reason in result.skipped)
    document = json.loads(json.dumps(result.to_json()))
    assert document["verdict"] == result.verdict
    assert document["correction"] == "holm"


def test_too_few_decisions_are_refused() -> None:
    rng = np.random.default_rng(9)
    with pytest.raises(ValueError, match=f"at least {MIN_SAMPLES}"):
        decision_drift(sample(rng, 100), sample(rng, MIN_SAMPLES - 1))
    with pytest.raises(ValueError, match="same length"):
        DecisionSample(
            chosen=["a", "b"], score=[1.0], confidence=[1.0, 1.0], margin=[1.0, 1.0],
            entropy=[0.0, 0.0], constraints_bound=[True, False],
        )  # fmt: skip
