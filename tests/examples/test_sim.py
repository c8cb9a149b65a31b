from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from examples.booking.sim import (
    ACTION_COLUMNS,
    STATE_COLUMNS,
    TARGET_COLUMNS,
    Action,
    Calendar,
    Intent,
    describe_shift,
    generate_dataset,
    make_rooms,
    sample_actions,
    sample_intent,
    simulate,
)


def test_dataset_is_deterministic_for_a_seed() -> None:
    first = generate_dataset(400, seed=7)
    pd.testing.assert_frame_equal(first, generate_dataset(400, seed=7))
    assert not first.equals(generate_dataset(400, seed=8))
    assert list(first.columns[: len(STATE_COLUMNS)]) == list(STATE_COLUMNS)
    assert set(ACTION_COLUMNS) | set(TARGET_COLUMNS) <= set(first.columns)
    assert first[list(STATE_COLUMNS) + list(ACTION_COLUMNS)].notna().all().all()


def test_dataset_mixes_conflicts_and_free_slots() -> None:
    df = generate_dataset(2000, seed=1)
    assert 0.2 < df["conflict"].mean() < 0.8
    # A sampled conflict follows the simulator's probability, not the other way round.
    assert df.loc[df["conflict_probability"] > 0.9, "conflict"].mean() > 0.85
    assert df.loc[df["conflict_probability"] < 0.2, "conflict"].mean() < 0.2


def test_shift_changes_the_intent_distribution_measurably() -> None:
    base, shifted = describe_shift(4000, seed=0, shift=0.0), describe_shift(4000, seed=0, shift=1.0)
    assert shifted["people_mean"] - base["people_mean"] > 2.5
    assert shifted["start_hour_mean"] - base["start_hour_mean"] > 2.0
    assert shifted["day_offset_mean"] - base["day_offset_mean"] > 2.0
    for item in ("projector", "whiteboard", "video"):
        assert shifted[f"needs_{item}"] - base[f"needs_{item}"] > 0.2
    # The same holds for the features the world model sees, with a clear two-sample test.
    a = generate_dataset(1500, seed=3, shift=0.0)
    b = generate_dataset(1500, seed=3, shift=1.0)
    for column in ("intent_people", "intent_start", "intent_day"):
        assert ks_2samp(a[column], b[column]).pvalue < 1e-6, column
    # And a small shift moves it less than a big one.
    small = describe_shift(4000, seed=0, shift=0.25)
    assert base["people_mean"] < small["people_mean"] < shifted["people_mean"]


def test_shift_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="shift"):
        sample_intent(np.random.default_rng(0), shift=1.5)


def test_rooms_and_calendar() -> None:
    rooms = make_rooms()
    assert len(rooms) == 12
    assert [r.capacity for r in rooms] == sorted(r.capacity for r in rooms)
    assert (rooms[0].capacity, rooms[-1].capacity) == (2, 20)
    assert {r.id for r in rooms} == {f"room-{i:02d}" for i in range(1, 13)}
    cal = Calendar.generate(seed=5)
    assert np.array_equal(cal.busy, Calendar.generate(seed=5).busy)
    assert not cal.busy[:, :, :8].any() and not cal.busy[:, :, 20:].any()
    assert 0.05 < cal.busy[:, :, 8:20].mean() < 0.6


def test_simulate_follows_the_calendar() -> None:
    cal = Calendar.generate(seed=0, occupancy=0.0)
    rng = np.random.default_rng(0)
    intent = Intent(6, 1, 10, 2, frozenset({"projector"}))
    room = next(r for r in cal.rooms if r.capacity >= 6 and "projector" in r.equipment)
    action = Action(room.index, 1, 10, 2)
    free = simulate(intent, action, cal, rng)
    assert free.conflict_probability < 0.1
    assert free.utilisation == pytest.approx(6 / room.capacity)
    assert free.step_conflicts == (0,) * 8
    cal.book(Action(room.index, 1, 11, 1))
    taken = simulate(intent, action, cal, rng)
    assert taken.conflict_probability > 0.9
    assert taken.step_conflicts[:3] == (0, 1, 0)
    bare = next(r for r in cal.rooms if r.capacity >= 6 and "projector" not in r.equipment)
    missing = simulate(intent, Action(bare.index, 1, 10, 2), cal, np.random.default_rng(1))
    assert missing.cost > bare.price_per_hour * 2 + 25  # the 40-unit equipment penalty


def test_sample_actions_are_distinct_and_start_with_the_request() -> None:
    cal = Calendar.generate(seed=2)
    intent = Intent(4, 2, 14, 2, frozenset(), flexibility_hours=1)
    actions = sample_actions(intent, cal, 16, np.random.default_rng(0))
    assert len(actions) == 16 == len(set(actions))
    assert (actions[0].day_offset, actions[0].start_hour, actions[0].duration_hours) == (2, 14, 2)
    assert all(8 <= a.start_hour < a.start_hour + a.duration_hours <= 20 for a in actions)
    with pytest.raises(ValueError, match="incomplete"):
        sample_actions(Intent(None, 2, 14, 2), cal, 4, np.random.default_rng(0))
