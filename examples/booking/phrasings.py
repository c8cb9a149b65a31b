"""Seeded plain-text booking requests, with the intent each one states.

Intents come from `sim.sample_intent` (so `shift` moves them exactly as it moves the training
data) and are worded with varied templates that `OfflineParser` understands. A few percent
(`ambiguous_rate`) leave out the group size, the day or the start time; their `intent` has
that field None, which is what a correct parser returns for them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np

from .intent import NUMBER_WORDS, weekday_offset
from .sim import DEFAULT_START_DATE, Intent, sample_intent

_WORDS = NUMBER_WORDS[:13]  # up to "twelve": larger numbers read better as digits
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EQUIPMENT_WORDS = {
    "projector": ("a projector", "a beamer", "a projector"),
    "whiteboard": ("a whiteboard", "a whiteboard", "a flipchart"),
    "video": ("video", "video conferencing", "a camera for video calls"),
}


@dataclass(frozen=True)
class GeneratedRequest:
    """A request's text and the intent it states (None where the text leaves a field out)."""

    text: str
    intent: Intent


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _people(n: int, rng: np.random.Generator) -> str:
    noun = "person" if n == 1 else "people"
    word = _WORDS[n] if n < len(_WORDS) else str(n)
    return _pick(
        rng,
        [
            f"a room for {n} {noun}",
            f"space for {n}",
            f"a room for {word} {noun}",
            f"a meeting room for a team of {n}",
            f"a room for {n} attendees" if n > 1 else f"a room for {n} person",
        ],
    )


def _day(offset: int, today: date, rng: np.random.Generator) -> str:
    options = [f"on {(today + timedelta(days=offset)).isoformat()}"]
    if offset == 0:
        options += ["today", "today"]
    if offset == 1:
        options += ["tomorrow", "tomorrow"]
    if offset == 2:
        options.append("the day after tomorrow")
    if offset >= 2:
        options.append(f"in {offset} days")
    weekday = (today + timedelta(days=offset)).weekday()
    if 1 <= offset <= 7 and weekday_offset(today, weekday) == offset:
        options.append(f"on {_WEEKDAYS[weekday]}")
    return _pick(rng, options)


def _twelve(hour: int) -> tuple[int, str]:
    return (hour - 12 if hour > 12 else hour), ("pm" if hour >= 12 else "am")


def _bare(hour: int) -> str:
    # The parser reads a bare 1..7 as the afternoon, so 13..19 can be said as 1..7.
    return str(hour - 12 if hour >= 13 else hour)


def _hours(n: int, rng: np.random.Generator) -> str:
    if n == 1:
        return _pick(rng, ["an hour", "1 hour", "one hour"])
    return _pick(rng, [f"{n} hours", f"{n}h", f"{_WORDS[n]} hours"])


def _time(start: int, duration: int, rng: np.random.Generator) -> str:
    end = start + duration
    (s12, s_half), (e12, e_half) = _twelve(start), _twelve(end)
    ranges = [
        f"{s12}-{e12}{e_half}" if s_half == e_half else f"{s12}{s_half}-{e12}{e_half}",
        f"from {s12}{s_half} to {e12}{e_half}",
        f"{start:02d}:00-{end:02d}:00",
        f"from {start}:00 to {end}:00",
    ]
    singles = [
        f"at {_bare(start)} for {_hours(duration, rng)}",
        f"at {s12}{s_half} for {_hours(duration, rng)}",
        f"at {start:02d}:00 for {_hours(duration, rng)}",
    ]
    return _pick(rng, ranges + singles)


def _equipment(items: frozenset[str], rng: np.random.Generator) -> str:
    if not items:
        return _pick(rng, ["", "", "", ", no special equipment needed"])
    named = [_pick(rng, _EQUIPMENT_WORDS[e]) for e in sorted(items)]
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    return _pick(rng, [f", with {listed}", f" with {listed}", f". We need {listed}"])


def _flexibility(hours: int, rng: np.random.Generator) -> str:
    options = {
        0: ["", "", "", " sharp", ", exactly at that time", ", strict timing"],
        1: [", give or take an hour", ", flexible by 1 hour"],
        2: [", we're flexible", ", flexible by 2 hours"],
        3: [", very flexible on time", ", flexible by 3 hours"],
    }[hours]
    return _pick(rng, options)


def render(intent: Intent, rng: np.random.Generator, today: date = DEFAULT_START_DATE) -> str:
    """Word one intent; fields that are None are left out of the text.

    >>> text = render(Intent(6, 1, 15, 2, frozenset({"projector"})), np.random.default_rng(0))
    >>> "6" in text or "six" in text
    True
    """
    parts: list[str] = []
    if intent.people is not None:
        parts.append(_people(intent.people, rng))
    else:
        parts.append(_pick(rng, ["a room", "a meeting room", "somewhere to meet"]))
    if intent.day_offset is not None:
        parts.append(_day(intent.day_offset, today, rng))
    if intent.start_hour is not None and intent.duration_hours is not None:
        parts.append(_time(intent.start_hour, intent.duration_hours, rng))
    elif intent.duration_hours is not None:
        parts.append(f"for {_hours(intent.duration_hours, rng)} in the afternoon")
    elif intent.start_hour is None:
        parts.append(_pick(rng, ["sometime", "in the morning", "later"]))
    opener = _pick(rng, ["", "", "Book ", "I need ", "Can I get ", "Please find "])
    body = " ".join(parts) + _flexibility(intent.flexibility_hours, rng)
    body += _equipment(intent.equipment, rng)
    closer = "?" if opener == "Can I get " else _pick(rng, ["", ".", ", thanks", " please"])
    text = opener + body + closer
    return text[0].upper() + text[1:] if opener else text


def generate_requests(
    n: int,
    seed: int = 0,
    shift: float = 0.0,
    today: date = DEFAULT_START_DATE,
    ambiguous_rate: float = 0.04,
) -> list[GeneratedRequest]:
    """`n` requests, the same for the same arguments; `shift` as in `sim.sample_intent`.

    >>> first = generate_requests(3, seed=0)[0]
    >>> first.text[:50]
    'I need space for 4 today at 10:00 for 1 hour, give'
    >>> first.intent.people, first.intent.start_hour
    (4, 10)
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        intent = sample_intent(rng, shift)
        if rng.random() < ambiguous_rate:
            dropped = _pick(rng, ["people", "day_offset", "start_hour"])
            if dropped == "people":
                intent = replace(intent, people=None)
            elif dropped == "day_offset":
                intent = replace(intent, day_offset=None)
            else:
                duration = intent.duration_hours if rng.random() < 0.5 else None
                intent = replace(intent, start_hour=None, duration_hours=duration)
        out.append(GeneratedRequest(render(intent, rng, today), intent))
    return out
