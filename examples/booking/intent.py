"""The language-model stage: plain text in, a structured `Intent` out.

Two adapters share the `IntentParser` protocol: `OfflineParser` (rules, deterministic, the
default) and `OpenAICompatibleParser` (any server speaking `POST /v1/chat/completions`).
Each reports what the GenAI conventions need: `system`, `model`, `version` and the token usage
of its last call. A field the text does not give stays None, so the stack can ask for it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol, runtime_checkable

import httpx

from .errors import IntentParseError
from .sim import CLOSE_HOUR, EQUIPMENT, OPEN_HOUR, Intent


@dataclass(frozen=True)
class TokenUsage:
    """Tokens of one call, as `gen_ai.usage.input_tokens` / `output_tokens` report them."""

    input_tokens: int = 0
    output_tokens: int = 0


@runtime_checkable
class IntentParser(Protocol):
    """Turns a request's text into an `Intent`; describes itself for instrumentation."""

    @property
    def system(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def last_usage(self) -> TokenUsage: ...

    def parse(self, text: str) -> Intent: ...


# Numbers as people write them, 0 to 20; `phrasings` writes requests with the same words.
NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]
_NUMBER_WORDS = {w: i for i, w in enumerate(NUMBER_WORDS)}
_NUMBER_WORDS.update({"a dozen": 12, "a couple of": 2, "a": 1, "an": 1})
_WORDS = sorted(_NUMBER_WORDS, key=len, reverse=True)
# Counts of people never read "a"/"an" as one ("a room for a team"); durations do ("an hour").
_COUNT = r"(\d+|" + "|".join(w for w in _WORDS if w not in ("a", "an")) + ")"
_NUM = r"(\d+|" + "|".join(_WORDS) + ")"
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_RE = re.compile(
    r"\b(?:next\s+|this\s+|on\s+)?(mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)"
    r"(?:day|sday|nesday|rsday|urday)?\b"
)
_SYNONYMS = {
    "projector": "projector",
    "beamer": "projector",
    "screen": "projector",
    "whiteboard": "whiteboard",
    "white board": "whiteboard",
    "flipchart": "whiteboard",
    "video": "video",
    "videoconference": "video",
    "video conference": "video",
    "video call": "video",
    "zoom": "video",
    "camera": "video",
    "vc": "video",
}
_EQUIPMENT_RE = re.compile(
    r"\b(" + "|".join(sorted(map(re.escape, _SYNONYMS), key=len, reverse=True)) + r")\b"
)
_HOUR = r"(\d{1,2})(?::(\d{2}))?\s*(am|pm)?"
_NOT_PEOPLE = r"(?!\s*(?:hours?|hrs?|h\b|minutes?|mins?|am\b|pm\b|:\d|days?\b|weeks?\b|-))"
_PEOPLE_RES = (
    re.compile(
        rf"\b{_COUNT}\s*(?:people|persons?|ppl|attendees|participants|guests|pax|(?:of )?us)\b"
    ),
    re.compile(rf"\b(?:team|group) of\s+{_COUNT}\b"),
    re.compile(rf"\b(?:for|seats? for|space for|room for)\s+{_COUNT}\b{_NOT_PEOPLE}"),
)
_DURATION_RES = (
    (re.compile(rf"\bfor\s+{_NUM}\s*(?:hours?|hrs?|h)\b"), 1),
    (re.compile(r"\bfor\s+(\d+)\s*(?:minutes?|mins?)\b"), 60),
    (re.compile(r"\bfor\s+(half an hour)\b"), 0),
)
_RANGE_RE = re.compile(rf"\b(?:from\s+|between\s+)?{_HOUR}\s*(?:-|to|until|till|and)\s*{_HOUR}\b")
_AT_RE = re.compile(rf"\b(?:at|from|starting)\s+{_HOUR}\b")
_AMPM_RE = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm)\b")
_CLOCK_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b")


def _number(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBER_WORDS[word]


def count_tokens(text: str) -> int:
    """A model-free token count (words and punctuation marks), for the offline parser's usage.

    >>> count_tokens("a room for 6 people, please")
    7
    """
    return len(re.findall(r"\w+|[^\w\s]", text))


def _blank(text: str, match: re.Match[str]) -> str:
    # Blank the span rather than delete it, so later patterns cannot join words across it.
    return text[: match.start()] + " " * (match.end() - match.start()) + text[match.end() :]


def _hour(value: str, minutes: str | None, half: str | None, bare_half: str | None = None) -> int:
    hour = int(value)
    half = half or bare_half
    if half == "pm" and hour < 12:
        hour += 12
    elif half == "am" and hour == 12:
        hour = 0
    elif half is None and 1 <= hour < OPEN_HOUR:
        # Nobody books a meeting room at 3 in the morning: a bare 1..7 means the afternoon.
        hour += 12
    return hour


class OfflineParser:
    """Rules and keywords; no network, the same answer for the same text and `today`.

    Reading conventions: a weekday name ("Friday", "next Friday") is the next such day, 1 to 7
    days ahead; a bare hour 1..7 is in the afternoon; slots are whole hours, so a start's
    minutes are dropped and an end's minutes round up; the start may move only as far as the
    text allows ("flexible" = 2 hours, "give or take an hour" = 1, otherwise 0).

    >>> parser = OfflineParser(today=date(2026, 11, 23))
    >>> intent = parser.parse("a room for 6 people tomorrow 3-5pm, with a projector")
    >>> intent.people, intent.day_offset, intent.start_hour, intent.duration_hours
    (6, 1, 15, 2)
    >>> sorted(intent.equipment)
    ['projector']
    """

    system = "warden-offline"
    model = "booking-intent-rules"
    version = "1"

    def __init__(self, today: date | None = None) -> None:
        self.today = today or date.today()
        self.last_usage = TokenUsage()

    def parse(self, text: str) -> Intent:
        work = " ".join(text.lower().replace("\u2013", "-").replace("\u2014", "-").split())
        day, work = self._day(work)
        people, work = self._first(_PEOPLE_RES, work)
        duration, work = self._duration(work)
        start, end, work = self._times(work)
        if duration is None and start is not None and end is not None:
            duration = end - start if end > start else None
        intent = Intent(
            people=people if people and people > 0 else None,
            day_offset=day,
            start_hour=start if start is not None and OPEN_HOUR <= start < CLOSE_HOUR else None,
            duration_hours=duration if duration and duration > 0 else None,
            equipment=self._equipment(work),
            flexibility_hours=self._flexibility(work),
        )
        self.last_usage = TokenUsage(count_tokens(text), count_tokens(json.dumps(intent.to_dict())))
        return intent

    def _day(self, text: str) -> tuple[int | None, str]:
        if match := re.search(r"\b(\d{4}-\d{2}-\d{2})\b", text):
            try:
                return (date.fromisoformat(match[1]) - self.today).days, _blank(text, match)
            except ValueError:
                return None, _blank(text, match)
        for pattern, offset in (
            (r"\b(?:the\s+)?day after tomorrow\b", 2),
            (r"\btomorrow\b", 1),
            (r"\btoday\b|\btonight\b", 0),
        ):
            if match := re.search(pattern, text):
                return offset, _blank(text, match)
        if match := re.search(rf"\bin\s+{_NUM}\s+days?\b", text):
            return _number(match[1]), _blank(text, match)
        if match := _WEEKDAY_RE.search(text):
            target = next(i for i, name in enumerate(_WEEKDAYS) if name.startswith(match[1]))
            return weekday_offset(self.today, target), _blank(text, match)
        return None, text

    @staticmethod
    def _first(patterns: tuple[re.Pattern[str], ...], text: str) -> tuple[int | None, str]:
        for pattern in patterns:
            if match := pattern.search(text):
                return _number(match[1]), _blank(text, match)
        return None, text

    @staticmethod
    def _duration(text: str) -> tuple[int | None, str]:
        for pattern, unit in _DURATION_RES:
            if match := pattern.search(text):
                hours = 1 if unit == 0 else math.ceil(_number(match[1]) / unit)
                return hours, _blank(text, match)
        return None, text

    @staticmethod
    def _times(text: str) -> tuple[int | None, int | None, str]:
        if match := _RANGE_RE.search(text):
            h1, m1, half1, h2, m2, half2 = match.groups()
            # "3-5pm": the end's am/pm applies to the start unless that would reverse the range.
            inherit = half2 if half1 is None and half2 and int(h1) <= int(h2) else None
            start = _hour(h1, m1, half1, inherit)
            end = _hour(h2, m2, half2) + (1 if m2 and int(m2) > 0 else 0)
            if end <= start and half2 is None and end + 12 <= 24:
                end += 12
            return start, end, _blank(text, match)
        for pattern in (_AT_RE, _AMPM_RE, _CLOCK_RE):
            if match := pattern.search(text):
                groups = match.groups()
                half = groups[2] if len(groups) > 2 else None
                return _hour(groups[0], groups[1], half), None, _blank(text, match)
        if re.search(r"\bnoon\b|\bmidday\b", text):
            return 12, None, text
        return None, None, text

    @staticmethod
    def _equipment(text: str) -> frozenset[str]:
        text = re.sub(r"\b(?:no|without)\s+(?:a\s+|an\s+|any\s+)?(\w+(?: \w+)?)", " ", text)
        return frozenset(_SYNONYMS[m] for m in _EQUIPMENT_RE.findall(text))

    @staticmethod
    def _flexibility(text: str) -> int:
        if match := re.search(
            rf"\b(?:flexible by|give or take|\+/-|±)\s*{_NUM}\s*(?:hours?|hrs?|h)\b", text
        ):
            return min(_number(match[1]), 3)
        if re.search(r"\bvery flexible\b", text):
            return 3
        if re.search(r"\bflexible\b", text):
            return 2
        return 0


_PROMPT = """You extract meeting-room booking requests into JSON. Today is {today} ({weekday}).
Answer with one JSON object and nothing else, with exactly these keys:
  "people": integer number of attendees, or null if not stated;
  "day_offset": days from today (0 = today, 1 = tomorrow), or null if not stated;
  "start_hour": start hour on a 24-hour clock (8..19), or null if not stated;
  "duration_hours": whole hours, or null if neither a duration nor an end time is stated;
  "equipment": list drawn from {equipment};
  "flexibility_hours": how many hours the start may move (0..3; 0 if not stated).
Never guess a missing value: use null."""


class OpenAICompatibleParser:
    """An OpenAI-compatible chat-completions server as the language-model stage.

    `version` is the model the server says answered the last call (its `model` field), so a
    silently updated snapshot shows up as a new version. `transport` swaps the network, e.g.
    for `httpx.MockTransport` in a notebook; the tests use a real local server instead.

    >>> parser = OpenAICompatibleParser("http://127.0.0.1:8080", "llama-3.1-8b-instruct")
    >>> parser.system, parser.model
    ('openai', 'llama-3.1-8b-instruct')
    """

    system = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        today: date | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        base = base.removesuffix("/v1")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base, headers=headers, timeout=timeout, transport=transport
        )
        self.model = model
        self.version = model
        self.today = today or date.today()
        self.last_usage = TokenUsage()

    def __enter__(self) -> OpenAICompatibleParser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def messages(self, text: str) -> list[dict[str, str]]:
        """The chat messages sent for `text` (system prompt with today's date, then the text)."""
        prompt = _PROMPT.format(
            today=self.today.isoformat(),
            weekday=_WEEKDAYS[self.today.weekday()].capitalize(),
            equipment=json.dumps(list(EQUIPMENT)),
        )
        return [{"role": "system", "content": prompt}, {"role": "user", "content": text}]

    def parse(self, text: str) -> Intent:
        body = {
            "model": self.model,
            "messages": self.messages(text),
            "temperature": 0,
            "response_format": {"type": "json_object"},
        }
        try:
            response = self._client.post("/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise IntentParseError(
                f"the language model at {self._client.base_url} could not be reached ({exc}); "
                "check the server is running, or use OfflineParser"
            ) from exc
        if response.status_code != 200:
            raise IntentParseError(
                f"the language model answered HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            payload = response.json()
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise IntentParseError(
                f"the language model's answer is not a chat completion: {response.text[:200]}"
            ) from exc
        usage = payload.get("usage") or {}
        self.last_usage = TokenUsage(
            int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        )
        self.version = str(payload.get("model") or self.model)
        return intent_from_json(content)


def intent_from_json(content: str) -> Intent:
    """An `Intent` from a model's JSON answer, tolerating code fences and stray prose.

    >>> intent_from_json('```json\\n{"people": 4, "day_offset": 0, "start_hour": 9, '
    ...                  '"duration_hours": null, "equipment": ["Video"]}\\n```')
    Intent(people=4, day_offset=0, start_hour=9, duration_hours=None, equipment=frozenset({'video'}), flexibility_hours=0)
    """  # noqa: E501
    match = re.search(r"\{.*\}", content, re.DOTALL)
    try:
        data = json.loads(match[0] if match else content)
    except json.JSONDecodeError as exc:
        raise IntentParseError(f"the language model did not answer JSON: {content[:200]}") from exc
    if not isinstance(data, dict):
        raise IntentParseError(f"the language model answered JSON that is not an object: {data}")
    start = _int_or_none(data.get("start_hour"))
    flexibility = _int_or_none(data.get("flexibility_hours"))
    equipment = data.get("equipment") or []
    return Intent(
        people=_positive(data.get("people")),
        day_offset=_int_or_none(data.get("day_offset")),
        start_hour=start if start is not None and OPEN_HOUR <= start < CLOSE_HOUR else None,
        duration_hours=_positive(data.get("duration_hours")),
        equipment=frozenset(
            _SYNONYMS[e.lower()]
            for e in (equipment if isinstance(equipment, list) else [])
            if isinstance(e, str) and e.lower() in _SYNONYMS
        ),
        flexibility_hours=min(max(flexibility, 0), 3) if flexibility is not None else 0,
    )


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _positive(value: Any) -> int | None:
    number = _int_or_none(value)
    return number if number is not None and number > 0 else None


def weekday_offset(today: date, weekday: int) -> int:
    """Days from `today` to the next `weekday` (0 = Monday), 1..7, as the parser reads names.

    >>> weekday_offset(date(2026, 11, 23), 4)  # a Monday, to Friday
    4
    """
    return (weekday - today.weekday()) % 7 or 7
