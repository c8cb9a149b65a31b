"""The booking world: rooms, a calendar of existing bookings, intents, actions and outcomes.

Everything is generated from a seed, so the world model can be trained and tested without
downloading anything. The same feature functions serve the training set and the planner's
rollouts, so the model never sees features laid out differently at inference time.

Shift (for drift detection): `shift` in [0, 1] moves the intent distribution linearly.
At `shift=1.0` versus `0.0` (measured on 20,000 intents, see `describe_shift`):

- group size: mean 4.6 -> 8.3 people (lognormal median x 1.8);
- start hour: mean 11.5 -> 14.4 (normal centre 11.5 -> 14.5, clipped to opening hours);
- equipment: each of projector / whiteboard / video is asked for 30 points more often
  (35% -> 65%, 25% -> 55%, 20% -> 50%);
- day: half the requests move from "soon" (geometric, mean 1.8 days ahead) to a uniform
  4..13 days ahead (overall mean 1.8 -> 5.1 days);
- duration: the 3 and 4 hour share grows from 20% to 40% (mean 1.8 -> 2.2 hours).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

# Bump when the simulator or the features change: it is part of the registry's cache key.
SIM_VERSION = "1"
EQUIPMENT: tuple[str, ...] = ("projector", "whiteboard", "video")
OPEN_HOUR = 8
CLOSE_HOUR = 20
HORIZON_DAYS = 14
ROLLOUT_STEPS = 8
MAX_DURATION = 4
# How often, per request, each room-day of a running calendar is booked afresh by other people
# (`Calendar.churn`): the assistant's own bookings last about 1 / CHURN_RATE requests.
CHURN_RATE = 0.2
CHURN_DAYS = 2000
# A fixed "today" keeps generated data and action labels identical from run to run.
DEFAULT_START_DATE = date(2026, 11, 23)

STATE_COLUMNS: tuple[str, ...] = (
    "intent_people",
    "intent_day",
    "intent_start",
    "intent_duration",
    *(f"intent_needs_{e}" for e in EQUIPMENT),
    "intent_flexibility",
    "ctx_busy_prev",
    *(f"ctx_busy_{t}" for t in range(ROLLOUT_STEPS)),
    "ctx_room_day_load",
    "ctx_hour_load",
    "ctx_day_load",
)
ACTION_COLUMNS: tuple[str, ...] = (
    "act_capacity",
    *(f"act_has_{e}" for e in EQUIPMENT),
    "act_floor",
    "act_price",
    "act_day",
    "act_start",
    "act_duration",
    "act_start_shift",
    "act_day_shift",
    "act_missing_equipment",
    "act_utilisation",
    "act_over_capacity",
)
STEP_TARGETS: tuple[str, ...] = tuple(f"step_conflict_{t}" for t in range(ROLLOUT_STEPS))
TARGET_COLUMNS: tuple[str, ...] = ("conflict", "utilisation", "cost", *STEP_TARGETS)


@dataclass(frozen=True)
class Room:
    """A bookable room. `index` is 0-based; its id is 1-based (`room-01`)."""

    index: int
    capacity: int
    equipment: frozenset[str]
    floor: int
    price_per_hour: float

    @property
    def id(self) -> str:
        return f"room-{self.index + 1:02d}"


@dataclass(frozen=True)
class Intent:
    """What the user asked for; a field the request did not say is None.

    >>> Intent(people=6, day_offset=1, start_hour=15, duration_hours=2).missing()
    []
    >>> Intent(people=None, day_offset=1, start_hour=None, duration_hours=2).missing()
    ['people', 'start_hour']
    """

    people: int | None
    day_offset: int | None
    start_hour: int | None
    duration_hours: int | None
    equipment: frozenset[str] = frozenset()
    # How far the start may move and still count as what was asked: only what the user grants.
    flexibility_hours: int = 0

    def missing(self) -> list[str]:
        """The required fields the request left out, in a fixed order."""
        names = ("people", "day_offset", "start_hour", "duration_hours")
        return [n for n in names if getattr(self, n) is None]

    def is_complete(self) -> bool:
        return not self.missing()

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (equipment sorted), e.g. for fingerprints and logs."""
        return {
            "people": self.people,
            "day_offset": self.day_offset,
            "start_hour": self.start_hour,
            "duration_hours": self.duration_hours,
            "equipment": sorted(self.equipment),
            "flexibility_hours": self.flexibility_hours,
        }


@dataclass(frozen=True)
class Action:
    """Booking `room` (0-based index) on `day_offset` from `start_hour` for `duration_hours`."""

    room: int
    day_offset: int
    start_hour: int
    duration_hours: int

    def label(self, start_date: date = DEFAULT_START_DATE) -> str:
        """The action as one string, as the planner records it.

        >>> Action(6, 1, 15, 2).label(date(2026, 11, 23))
        'room-07@2026-11-24T15:00/2h'
        """
        day = start_date + timedelta(days=self.day_offset)
        return f"room-{self.room + 1:02d}@{day.isoformat()}T{self.start_hour:02d}:00/" + (
            f"{self.duration_hours}h"
        )


@dataclass(frozen=True)
class Outcome:
    """What booking an action leads to, as the simulator draws it."""

    conflict_probability: float
    conflict: bool
    utilisation: float
    cost: float
    step_conflicts: tuple[int, ...]


def make_rooms(seed: int = 0, count: int = 12) -> list[Room]:
    """A building of `count` rooms seating 2..20; big rooms more often have equipment.

    >>> rooms = make_rooms()
    >>> len(rooms), rooms[0].capacity, rooms[-1].capacity
    (12, 2, 20)
    """
    rng = np.random.default_rng(seed)
    capacities = np.unique(np.linspace(2, 20, count).round().astype(int))
    if len(capacities) < count:
        capacities = np.sort(rng.integers(2, 21, size=count))
        capacities[0], capacities[-1] = 2, 20
    rooms = []
    for i, cap in enumerate(capacities):
        size = cap / 20
        has = {
            "projector": rng.random() < 0.3 + 0.6 * size,
            "whiteboard": rng.random() < 0.6,
            "video": rng.random() < 0.1 + 0.6 * size,
        }
        equipment = frozenset(e for e, present in has.items() if present)
        price = 8.0 + 2.5 * float(cap) + (6.0 if "video" in equipment else 0.0)
        rooms.append(Room(i, int(cap), equipment, floor=1 + i % 4, price_per_hour=price))
    return rooms


# How popular each working hour is: mid-morning and early afternoon fill up first.
_HOUR_WEIGHT = np.array(
    [0.0] * OPEN_HOUR
    + [0.5, 0.8, 1.0, 1.0, 0.6, 0.7, 0.95, 0.9, 0.7, 0.5, 0.35, 0.25]
    + [0.0] * (24 - CLOSE_HOUR)
)


@dataclass(eq=False)
class Calendar:
    """Rooms and their hourly bookings over `days` days from `start_date` (day offset 0).

    `busy[room, day, hour]` is True when someone else holds the room at that hour.
    """

    rooms: list[Room]
    busy: np.ndarray
    start_date: date = DEFAULT_START_DATE
    seed: int = 0
    level: float | None = None
    """The weekday occupancy other people book to (`generate`'s `occupancy`); None: unknown."""
    _day_load: np.ndarray = field(init=False, repr=False)
    # Room-days booked as `generate` books them, weekday and weekend ones, for `churn`.
    _booked_days: dict[bool, np.ndarray] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        open_hours = CLOSE_HOUR - OPEN_HOUR
        self._day_load = self.busy.sum(axis=2) / open_hours

    @classmethod
    def generate(
        cls,
        seed: int,
        rooms: list[Room] | None = None,
        days: int = HORIZON_DAYS,
        start_date: date = DEFAULT_START_DATE,
        occupancy: float | None = None,
    ) -> Calendar:
        """A calendar whose rooms are booked to about `occupancy` (drawn in 0.10..0.45 if None).

        >>> cal = Calendar.generate(seed=1)
        >>> cal.busy.shape
        (12, 14, 24)
        """
        rooms = rooms if rooms is not None else make_rooms()
        rng = np.random.default_rng(seed)
        level = float(rng.uniform(0.10, 0.45)) if occupancy is None else occupancy
        busy = np.zeros((len(rooms), days, 24), dtype=bool)
        for d in range(days):
            weekday = (start_date + timedelta(days=d)).weekday()
            day_level = level * (0.15 if weekday >= 5 else 1.0)
            for r in range(len(rooms)):
                _fill(busy[r, d], _booked_hours(day_level, rng), rng)
        return cls(rooms=rooms, busy=busy, start_date=start_date, seed=seed, level=level)

    @property
    def days(self) -> int:
        return int(self.busy.shape[1])

    def is_free(self, action: Action) -> bool:
        hours = slice(action.start_hour, action.start_hour + action.duration_hours)
        return not self.busy[action.room, action.day_offset, hours].any()

    def copy(self) -> Calendar:
        """The same rooms and bookings, booked independently from now on.

        >>> cal = Calendar.generate(seed=1)
        >>> cal.copy().busy is cal.busy
        False
        """
        return dataclasses.replace(self, busy=self.busy.copy())

    def book(self, action: Action) -> None:
        """Mark the action's hours as taken (the assistant's own bookings)."""
        hours = slice(action.start_hour, action.start_hour + action.duration_hours)
        self.busy[action.room, action.day_offset, hours] = True
        self._refresh()

    def churn(self, rng: np.random.Generator, rate: float = CHURN_RATE) -> None:
        """Other people's bookings come and go: each room-day is, with probability `rate`,
        booked afresh to the calendar's level as `generate` books it, dropping what it held
        (the assistant's bookings too).

        An assistant that only ever adds bookings fills its calendar as it runs, so its
        early and late requests meet different calendars. With churn between requests the
        calendar holds a steady state: about the generated occupancy plus the assistant's
        bookings of the last `1 / rate` requests.

        >>> cal = Calendar.generate(seed=1)
        >>> before = cal.busy.copy()
        >>> cal.churn(np.random.default_rng(0), rate=1.0)
        >>> bool((cal.busy != before).any()), cal.busy.shape
        (True, (12, 14, 24))
        """
        drawn = rng.random(self.busy.shape[:2]) < rate
        if not drawn.any():
            return
        rooms, days = np.nonzero(drawn)
        weekend = np.array(
            [(self.start_date + timedelta(days=int(d))).weekday() >= 5 for d in days], dtype=bool
        )
        for is_weekend in (False, True):
            chosen = weekend == is_weekend
            if chosen.any():
                booked = self._booked(is_weekend)
                picks = rng.integers(len(booked), size=int(chosen.sum()))
                self.busy[rooms[chosen], days[chosen]] = booked[picks]
        self._refresh()

    def _booked(self, weekend: bool) -> np.ndarray:
        """`CHURN_DAYS` room-days booked at the calendar's level as `generate` books them
        (drawn once per calendar, from its seed): `churn` books afresh by picking among them,
        which costs a copy instead of a booking loop per room-day."""
        found = self._booked_days.get(weekend)
        if found is None:
            level = self.level if self.level is not None else float(self._day_load.mean())
            day_level = level * (0.15 if weekend else 1.0)
            draw = np.random.default_rng([self.seed, int(weekend)])
            found = np.zeros((CHURN_DAYS, 24), dtype=bool)
            for row in found:
                _fill(row, _booked_hours(day_level, draw), draw)
            self._booked_days[weekend] = found
        return found

    def day_load(self, room: int, day: int) -> float:
        return float(self._day_load[room, day])

    def building_load(self, day: int) -> float:
        return float(self._day_load[:, day].mean())

    def hour_load(self, day: int, hour: int) -> float:
        return float(self.busy[:, day, hour].mean())

    def window(self, action: Action) -> np.ndarray:
        """Busy flags of the action's room for the `ROLLOUT_STEPS` hours from its start."""
        out = np.zeros(ROLLOUT_STEPS, dtype=np.float32)
        end = min(action.start_hour + ROLLOUT_STEPS, CLOSE_HOUR)
        n = max(0, end - action.start_hour)
        out[:n] = self.busy[action.room, action.day_offset, action.start_hour : end]
        return out


def _booked_hours(day_level: float, rng: np.random.Generator) -> int:
    return int(rng.binomial(CLOSE_HOUR - OPEN_HOUR, min(day_level, 0.95)))


def _fill(day: np.ndarray, hours: int, rng: np.random.Generator) -> None:
    """Book `hours` hours of one room-day in blocks of 1-3 hours at popular times."""
    weights = _HOUR_WEIGHT.copy()
    booked = 0
    for _ in range(40):
        if booked >= hours:
            break
        length = int(rng.integers(1, 4))
        starts = np.arange(OPEN_HOUR, CLOSE_HOUR - length + 1)
        w = weights[starts]
        if w.sum() <= 0:
            break
        start = int(rng.choice(starts, p=w / w.sum()))
        block = slice(start, start + length)
        if day[block].any():
            continue
        day[block] = True
        weights[block] = 0.0
        booked += length


def sample_intent(rng: np.random.Generator, shift: float = 0.0) -> Intent:
    """One complete intent; `shift` in [0, 1] moves the distribution as the module doc says.

    >>> intent = sample_intent(np.random.default_rng(0))
    >>> intent.is_complete()
    True
    """
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"shift must be within [0, 1], got {shift}")
    people = int(np.clip(round(rng.lognormal(math.log(4.0 * (1 + 0.8 * shift)), 0.55)), 1, 20))
    if rng.random() < 0.5 * shift:
        day = int(rng.integers(4, HORIZON_DAYS))
    else:
        day = int(min(rng.geometric(0.35) - 1, HORIZON_DAYS - 1))
    long_share = 0.2 + 0.2 * shift
    short = (1.0 - long_share) / (0.45 + 0.35)
    duration = int(
        rng.choice([1, 2, 3, 4], p=[0.45 * short, 0.35 * short, long_share * 0.75, long_share / 4])
    )
    start = int(np.clip(round(rng.normal(11.5 + 3.0 * shift, 2.0)), OPEN_HOUR, CLOSE_HOUR - 1))
    start = min(start, CLOSE_HOUR - duration)
    base = {"projector": 0.35, "whiteboard": 0.25, "video": 0.20}
    equipment = frozenset(e for e, p in base.items() if rng.random() < p + 0.3 * shift)
    flexibility = int(rng.choice([0, 1, 2, 3], p=[0.3, 0.4, 0.2, 0.1]))
    return Intent(people, day, start, duration, equipment, flexibility)


def sample_actions(
    intent: Intent, calendar: Calendar, n: int, rng: np.random.Generator
) -> list[Action]:
    """`n` distinct candidate actions around the request; the requested slot comes first.

    About 45% keep the requested slot in another room, 30% move the start by up to
    max(2, flexibility) hours, the rest move the day by one or two (and sometimes the start by
    an hour), so a counter-proposal can be found when the requested slot is taken. Rooms that
    seat the group with the equipment asked for are preferred, but others are drawn too, so the
    world model and the planner also see what they must reject.
    """
    if not intent.is_complete():
        raise ValueError(f"cannot propose actions for an incomplete intent: {intent.missing()}")
    assert intent.people is not None and intent.day_offset is not None
    assert intent.start_hour is not None and intent.duration_hours is not None
    duration = min(intent.duration_hours, MAX_DURATION)
    day0 = min(max(intent.day_offset, 0), calendar.days - 1)
    start0 = min(max(intent.start_hour, OPEN_HOUR), CLOSE_HOUR - duration)
    everyone = [r.index for r in calendar.rooms]
    suitable = [
        r.index
        for r in calendar.rooms
        if r.capacity >= intent.people and intent.equipment <= r.equipment
    ] or [r.index for r in calendar.rooms if r.capacity >= intent.people]
    reach = max(2, intent.flexibility_hours)
    moves = [s for s in range(-reach, reach + 1) if s != 0]
    seen: set[Action] = set()
    out: list[Action] = []
    for attempt in range(20 * n):
        if len(out) >= n:
            break
        pool = suitable if suitable and rng.random() < 0.75 else everyone
        room = int(rng.choice(pool))
        day, start = day0, start0
        kind = rng.random() if attempt else 0.0
        if 0.45 <= kind < 0.75:
            start = start0 + int(rng.choice(moves))
        elif kind >= 0.75:
            day = day0 + int(rng.choice([-2, -1, 1, 2]))
            start = start0 + (int(rng.choice([-1, 1])) if rng.random() < 0.3 else 0)
        if not (0 <= day < calendar.days and OPEN_HOUR <= start <= CLOSE_HOUR - duration):
            continue
        action = Action(room, day, start, duration)
        if action not in seen:
            seen.add(action)
            out.append(action)
    return out


def _scaled(value: int | None, scale: int) -> float | None:
    return None if value is None else value / scale


def intent_features(intent: Intent) -> dict[str, float | None]:
    """The intent part of the world model's state (the `intent_*` of `STATE_COLUMNS`, scaled
    the same way), by column name: what the stack records for input drift, comparable with
    the training dataset's columns. A field the request did not say is None.

    >>> intent_features(Intent(people=6, day_offset=1, start_hour=12, duration_hours=2))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'intent_people': 0.3, 'intent_day': 0.07142857142857142, 'intent_start': 0.5,
     'intent_duration': 0.5, 'intent_needs_projector': 0.0, 'intent_needs_whiteboard': 0.0,
     'intent_needs_video': 0.0, 'intent_flexibility': 0.0}
    """
    return {
        "intent_people": _scaled(intent.people, 20),
        "intent_day": _scaled(intent.day_offset, HORIZON_DAYS),
        "intent_start": _scaled(intent.start_hour, 24),
        "intent_duration": _scaled(intent.duration_hours, MAX_DURATION),
        **{f"intent_needs_{e}": float(e in intent.equipment) for e in EQUIPMENT},
        "intent_flexibility": intent.flexibility_hours / 3,
    }


def state_features(intent: Intent, action: Action, calendar: Calendar) -> np.ndarray:
    """The world model's state input, in `STATE_COLUMNS` order, each scaled to about [0, 1]."""
    assert intent.people is not None and intent.day_offset is not None
    assert intent.start_hour is not None and intent.duration_hours is not None
    prev = action.start_hour - 1
    busy_prev = float(prev >= OPEN_HOUR and calendar.busy[action.room, action.day_offset, prev])
    return np.concatenate(
        [
            list(intent_features(intent).values()),
            [busy_prev],
            calendar.window(action),
            [
                calendar.day_load(action.room, action.day_offset),
                calendar.hour_load(action.day_offset, action.start_hour),
                calendar.building_load(action.day_offset),
            ],
        ]
    ).astype(np.float32)


def action_features(intent: Intent, action: Action, calendar: Calendar) -> np.ndarray:
    """The world model's action input, in `ACTION_COLUMNS` order."""
    assert intent.people is not None and intent.day_offset is not None
    assert intent.start_hour is not None
    room = calendar.rooms[action.room]
    missing = len(intent.equipment - room.equipment)
    utilisation = intent.people / room.capacity
    return np.array(
        [
            room.capacity / 20,
            *(float(e in room.equipment) for e in EQUIPMENT),
            room.floor / 4,
            room.price_per_hour / 60,
            action.day_offset / HORIZON_DAYS,
            action.start_hour / 24,
            action.duration_hours / MAX_DURATION,
            (action.start_hour - intent.start_hour) / 4,
            (action.day_offset - intent.day_offset) / 3,
            missing / len(EQUIPMENT),
            min(utilisation, 3.0) / 3,
            float(utilisation > 1.0),
        ],
        dtype=np.float32,
    )


def simulate(
    intent: Intent, action: Action, calendar: Calendar, rng: np.random.Generator
) -> Outcome:
    """Draw what booking `action` for `intent` leads to.

    Utilisation is people / capacity, capped at 3. Conflict: near-certain when the slot
    overlaps an existing booking, likelier right after a meeting (overruns) and on busy days.
    Cost: the room's price, plus penalties for missing equipment, moving the slot, and seating
    more people than the room holds.
    """
    assert intent.people is not None and intent.day_offset is not None
    assert intent.start_hour is not None
    room = calendar.rooms[action.room]
    window = calendar.window(action)
    steps = tuple(int(window[t] > 0 and t < action.duration_hours) for t in range(ROLLOUT_STEPS))
    overlap = any(steps)
    prev = action.start_hour - 1
    busy_prev = prev >= OPEN_HOUR and bool(calendar.busy[action.room, action.day_offset, prev])
    load = calendar.hour_load(action.day_offset, action.start_hour)
    p = 0.02 + 0.9 * overlap + 0.15 * busy_prev + 0.1 * load
    p = float(min(p, 0.99))
    # Capped so that a wildly wrong room does not dominate the world model's regression loss.
    utilisation = min(intent.people / room.capacity, 3.0)
    cost = (
        room.price_per_hour * action.duration_hours
        + 40.0 * len(intent.equipment - room.equipment)
        + 15.0 * abs(action.start_hour - intent.start_hour)
        + 25.0 * abs(action.day_offset - intent.day_offset)
        + 30.0 * max(0, intent.people - room.capacity)
        + float(rng.normal(0.0, 3.0))
    )
    return Outcome(p, bool(rng.random() < p), float(utilisation), float(cost), steps)


def generate_dataset(
    n_samples: int = 20_000,
    seed: int = 0,
    shift: float = 0.0,
    n_calendars: int = 32,
) -> pd.DataFrame:
    """Rows of (state features, action features) -> outcomes, identical for the same arguments.

    Each row draws an intent, one of `n_calendars` calendars and one candidate action the way
    the planner proposes them, then simulates the outcome.

    >>> df = generate_dataset(n_samples=100, seed=3)
    >>> len(df), df["conflict"].isin([0, 1]).all()
    (100, np.True_)
    """
    rng = np.random.default_rng(seed)
    rooms = make_rooms()
    calendars = [
        Calendar.generate(seed=int(s), rooms=rooms)
        for s in rng.integers(0, 2**31 - 1, size=n_calendars)
    ]
    state = np.empty((n_samples, len(STATE_COLUMNS)), dtype=np.float32)
    act = np.empty((n_samples, len(ACTION_COLUMNS)), dtype=np.float32)
    targets = np.empty((n_samples, len(TARGET_COLUMNS)), dtype=np.float64)
    probability = np.empty(n_samples)
    labels: list[str] = []
    for i in range(n_samples):
        intent = sample_intent(rng, shift)
        calendar = calendars[int(rng.integers(n_calendars))]
        action = sample_actions(intent, calendar, 1 + int(rng.integers(4)), rng)[-1]
        outcome = simulate(intent, action, calendar, rng)
        state[i] = state_features(intent, action, calendar)
        act[i] = action_features(intent, action, calendar)
        targets[i] = (outcome.conflict, outcome.utilisation, outcome.cost, *outcome.step_conflicts)
        probability[i] = outcome.conflict_probability
        labels.append(action.label(calendar.start_date))
    df = pd.concat(
        [
            pd.DataFrame(state, columns=list(STATE_COLUMNS)),
            pd.DataFrame(act, columns=list(ACTION_COLUMNS)),
            pd.DataFrame(targets, columns=list(TARGET_COLUMNS)),
        ],
        axis=1,
    )
    df["conflict"] = df["conflict"].astype(np.int64)
    for column in STEP_TARGETS:
        df[column] = df[column].astype(np.int64)
    df["conflict_probability"] = probability
    df["action"] = labels
    return df


def describe_shift(n: int = 20_000, seed: int = 0, shift: float = 1.0) -> dict[str, float]:
    """Summary statistics of `n` intents at `shift`, to document and test the shift size.

    >>> stats = describe_shift(n=2000, shift=0.0)
    >>> 3.5 < stats["people_mean"] < 6
    True
    """
    rng = np.random.default_rng(seed)
    intents = [sample_intent(rng, shift) for _ in range(n)]
    stats: dict[str, float] = {
        "people_mean": float(np.mean([i.people for i in intents])),
        "start_hour_mean": float(np.mean([i.start_hour for i in intents])),
        "day_offset_mean": float(np.mean([i.day_offset for i in intents])),
        "duration_mean": float(np.mean([i.duration_hours for i in intents])),
    }
    for e in EQUIPMENT:
        stats[f"needs_{e}"] = float(np.mean([e in i.equipment for i in intents]))
    return stats
