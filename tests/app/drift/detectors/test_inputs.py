"""Input drift with Evidently: quiet on unchanged frames, naming the columns that moved, and a
dataset verdict that one chance column cannot trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from app.drift.detectors.inputs import MIN_SAMPLES, input_drift, min_drifted_columns

NUMERICAL = [f"num_{i}" for i in range(16)]
CATEGORICAL = ["room", "purpose", "recurring", "floor"]
MIX = {"room": (0.4, 0.3, 0.2, 0.1), "purpose": (0.5, 0.3, 0.2), "floor": (0.6, 0.4)}


def intents(
    rng: np.random.Generator,
    n: int,
    shifted: tuple[str, ...] = (),
    room_mix: tuple[float, ...] = (),
) -> pd.DataFrame:
    """20 intent features: 16 numerical (some shifted by half a standard deviation), 4
    categorical (the room mix changeable)."""
    frame = pd.DataFrame(
        {name: rng.normal(0.5 if name in shifted else 0.0, 1.0, n) for name in NUMERICAL}
    )
    frame["room"] = rng.choice(["a", "b", "c", "d"], n, p=room_mix or MIX["room"])
    frame["purpose"] = rng.choice(["meeting", "interview", "training"], n, p=MIX["purpose"])
    frame["recurring"] = rng.choice([True, False], n)
    frame["floor"] = rng.choice([1, 2], n, p=MIX["floor"])
    return frame


def test_unchanged_frames_are_not_drift() -> None:
    rng = np.random.default_rng(1)
    for n in (400, 1500):  # Evidently's p-value tests, then its distances
        result = input_drift(
            intents(rng, n), intents(rng, n), NUMERICAL, CATEGORICAL, render_html=False
        )
        assert result.verdict == "none", result.to_json()
        assert len(result.drifted_columns) < result.min_drifted == 4


def test_five_shifted_columns_of_twenty_are_drift_and_named() -> None:
    rng = np.random.default_rng(2)
    shifted = ("num_1", "num_4", "num_7", "num_10", "num_13")
    result = input_drift(
        intents(rng, 500), intents(rng, 500, shifted), NUMERICAL, CATEGORICAL, render_html=False
    )
    assert result.verdict == "drift"
    assert set(shifted) <= set(result.drifted_columns)
    assert len(result.drifted_columns) <= len(shifted) + 1
    assert result.share_drifted >= result.drift_share == 0.25
    assert result.dataset_drift


def test_four_shifted_columns_of_twenty_warn_and_one_does_not_count() -> None:
    rng = np.random.default_rng(3)
    reference = intents(rng, 1200)  # distance tests: chance flags next to none
    four = input_drift(
        reference, intents(rng, 1200, ("num_0", "num_1", "num_2", "num_3")), NUMERICAL,
        CATEGORICAL, render_html=False,
    )  # fmt: skip
    assert four.drifted_columns == ("num_0", "num_1", "num_2", "num_3")
    assert four.verdict == "warn"
    assert not four.dataset_drift
    one = input_drift(
        reference, intents(rng, 1200, ("num_5",)), NUMERICAL, CATEGORICAL, render_html=False
    )
    assert one.drifted_columns == ("num_5",)
    assert one.verdict == "none"  # distances have no p-value, so no "strong" column


def test_a_categorical_shift_is_found_with_a_two_sample_test() -> None:
    rng = np.random.default_rng(4)
    result = input_drift(
        intents(rng, 600), intents(rng, 600, room_mix=(0.2, 0.3, 0.2, 0.3)), NUMERICAL,
        CATEGORICAL, render_html=False,
    )  # fmt: skip
    room = next(c for c in result.columns if c.column == "room")
    assert room.drifted
    assert room.column_type == "categorical"
    assert room.stattest_name == "chi-square (two-sample) p_value"
    assert room.score_type == "p_value"
    assert "room" in result.drifted_columns
    # One column far past Bonferroni's bar is worth a warning, not dataset drift.
    assert result.strong_columns == ("room",)
    assert result.verdict == "warn"


def test_small_samples_get_p_value_tests_and_large_ones_evidently_distances() -> None:
    rng = np.random.default_rng(5)
    reference = intents(rng, 2000)
    small = input_drift(reference, intents(rng, 300), NUMERICAL, CATEGORICAL, render_html=False)
    large = input_drift(reference, intents(rng, 1500), NUMERICAL, CATEGORICAL, render_html=False)
    names = {c.column: c.stattest_name for c in small.columns}
    assert names["num_0"] == "K-S p_value"
    assert names["room"] == "chi-square (two-sample) p_value"
    names = {c.column: c.stattest_name for c in large.columns}
    assert names["num_0"] == "Wasserstein distance (normed)"
    assert names["room"] == "Jensen-Shannon distance"
    assert all(c.threshold == 0.1 and c.score_type == "distance" for c in large.columns)


@pytest.mark.parametrize("rows", [300, 2500])  # our small-sample tests; Evidently's distances
def test_the_html_report_matches_the_fast_path(rows: int) -> None:
    rng = np.random.default_rng(6)
    reference, current = intents(rng, rows), intents(rng, rows, ("num_2",))
    numerical, categorical = NUMERICAL[:4], CATEGORICAL[:2]
    fast = input_drift(reference, current, numerical, categorical, render_html=False)
    full = input_drift(reference, current, numerical, categorical)
    assert fast.html == ""
    assert len(full.html) > 10_000
    assert "<html" in full.html.lower()
    assert full.to_json() == fast.to_json()
    document = json.loads(json.dumps(full.to_json()))
    assert "html" not in document
    assert [c["column"] for c in document["columns"]] == [*numerical, *categorical]
    assert document["drifted_columns"] == ["num_2"]
    assert set(document["columns"][0]) == {
        "column", "column_type", "stattest_name", "score_type", "drift_score", "threshold",
        "drifted",
    }  # fmt: skip


def test_the_count_that_chance_rarely_reaches() -> None:
    assert [min_drifted_columns(m) for m in (1, 2, 5, 10, 20, 50)] == [1, 2, 2, 3, 4, 7]


def test_bad_arguments_are_refused_before_evidently_runs() -> None:
    rng = np.random.default_rng(7)
    frame = intents(rng, 100)
    with pytest.raises(ValueError, match=f"at least {MIN_SAMPLES}"):
        input_drift(frame, frame.head(MIN_SAMPLES - 1), NUMERICAL, CATEGORICAL)
    with pytest.raises(ValueError, match="lacks the columns"):
        input_drift(frame, frame.drop(columns=["room"]), NUMERICAL, CATEGORICAL)
    with pytest.raises(ValueError, match="both numerical and categorical"):
        input_drift(frame, frame, NUMERICAL, ["num_0"])
    with pytest.raises(ValueError, match="no columns"):
        input_drift(frame, frame, [], [])
