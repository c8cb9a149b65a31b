from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from examples.booking.errors import IntentParseError
from examples.booking.intent import (
    IntentParser,
    OfflineParser,
    OpenAICompatibleParser,
    TokenUsage,
    count_tokens,
    intent_from_json,
)
from examples.booking.phrasings import generate_requests
from examples.booking.sim import Intent

MONDAY = date(2026, 11, 23)
P, W, V = "projector", "whiteboard", "video"


def _intent(
    people: int | None,
    day: int | None,
    start: int | None,
    duration: int | None,
    equipment: list[str] | None = None,
    flexibility: int = 0,
) -> Intent:
    return Intent(people, day, start, duration, frozenset(equipment or []), flexibility)


PHRASINGS = [
    ("a room for 6 people tomorrow 3-5pm, with a projector", _intent(6, 1, 15, 2, [P])),
    ("need space for 12 on Friday at 10 for 2 hours with video", _intent(12, 4, 10, 2, [V])),
    ("Team of five, the day after tomorrow, 11am-1pm, flexible", _intent(5, 2, 11, 2, [], 2)),
    ("book 3 people on 2026-11-27 15:00-17:00, whiteboard", _intent(3, 4, 15, 2, [W])),
    ("8 of us in 3 days at 9am for an hour sharp", _intent(8, 3, 9, 1, [], 0)),
    ("room for 3 tomorrow at 4pm for 1h, give or take an hour", _intent(3, 1, 16, 1, [], 1)),
    ("room for 4 today from 2pm to 4pm, no projector needed", _intent(4, 0, 14, 2)),
    ("a room for two people tomorrow at 14:00 for 90 minutes", _intent(2, 1, 14, 2)),
    ("space for 10 on Monday 10-12 with a beamer and zoom", _intent(10, 7, 10, 2, [P, V])),
    ("Can I get a room for 6 tomorrow between 4 and 6pm?", _intent(6, 1, 16, 2)),
    ("a dozen people next Wednesday 9-11am, flexible by 3 hours", _intent(12, 2, 9, 2, [], 3)),
    ("for 7 attendees on thu at noon for 2h, video call", _intent(7, 3, 12, 2, [V])),
    # Ambiguous: what the text does not say stays None.
    ("a room tomorrow 3-5pm with a projector", _intent(None, 1, 15, 2, [P])),
    ("a room for 6 people tomorrow afternoon", _intent(6, 1, None, None)),
    ("a room for 4 at 10 for 1 hour", _intent(4, None, 10, 1)),
    ("somewhere to meet", _intent(None, None, None, None)),
]


@pytest.mark.parametrize(("text", "expected"), PHRASINGS, ids=[p[0][:40] for p in PHRASINGS])
def test_offline_parser_reads_phrasings(text: str, expected: Intent) -> None:
    parser = OfflineParser(today=MONDAY)
    assert parser.parse(text) == expected
    assert parser.last_usage.input_tokens == count_tokens(text) >= 3
    assert parser.last_usage.output_tokens > 10


def test_offline_parser_recovers_every_generated_request() -> None:
    parser = OfflineParser(today=MONDAY)
    for shift in (0.0, 1.0):
        requests = generate_requests(400, seed=9, shift=shift, today=MONDAY, ambiguous_rate=0.1)
        assert sum(not r.intent.is_complete() for r in requests) >= 20
        wrong = [(r.text, r.intent) for r in requests if parser.parse(r.text) != r.intent]
        assert wrong == []


def test_generated_requests_are_seeded_and_shifted() -> None:
    assert generate_requests(30, seed=4) == generate_requests(30, seed=4)
    assert generate_requests(30, seed=4) != generate_requests(30, seed=5)
    base = [r.intent.people for r in generate_requests(500, seed=1) if r.intent.people]
    shifted = [
        r.intent.people for r in generate_requests(500, seed=1, shift=1.0) if r.intent.people
    ]
    assert sum(shifted) / len(shifted) > sum(base) / len(base) + 2


def test_parsers_satisfy_the_protocol() -> None:
    offline = OfflineParser(today=MONDAY)
    remote = OpenAICompatibleParser("http://127.0.0.1:9", "m")
    assert isinstance(offline, IntentParser) and isinstance(remote, IntentParser)
    assert (offline.system, offline.model, offline.version) == (
        "warden-offline",
        "booking-intent-rules",
        "1",
    )
    remote.close()


def test_intent_from_json_tolerates_fences_and_rejects_garbage() -> None:
    fenced = (
        '```json\n{"people": "6", "day_offset": 1, "start_hour": 15, "duration_hours": 2, '
        '"equipment": ["Projector", "coffee"], "flexibility_hours": 9}\n```'
    )
    assert intent_from_json(fenced) == Intent(6, 1, 15, 2, frozenset({"projector"}), 3)
    # Out-of-range values are dropped, not trusted: the stack will ask instead.
    assert intent_from_json('{"people": -2, "start_hour": 3}') == Intent(None, None, None, None)
    with pytest.raises(IntentParseError, match="JSON"):
        intent_from_json("Sure! The meeting is tomorrow.")


@dataclass
class FakeOpenAI:
    """A real HTTP server on 127.0.0.1 that answers like an OpenAI-compatible one."""

    content: str = ""
    status: int = 200
    seen: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    state = FakeOpenAI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.seen.append(
                {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
            )
            if state.status != 200:
                answer = json.dumps({"error": {"message": "overloaded"}}).encode()
            else:
                answer = json.dumps(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "model": "tiny-llm-2026-11-01",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": state.content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 187,
                            "completion_tokens": 42,
                            "total_tokens": 229,
                        },
                    }
                ).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_openai_compatible_parser_against_a_local_server(openai_server: FakeOpenAI) -> None:
    openai_server.content = json.dumps(
        {
            "people": 6,
            "day_offset": 1,
            "start_hour": 15,
            "duration_hours": 2,
            "equipment": ["projector"],
            "flexibility_hours": 1,
        }
    )
    text = "a room for 6 people tomorrow 3-5pm, with a projector"
    with OpenAICompatibleParser(
        openai_server.url + "/v1/", "tiny-llm", api_key="sk-test", today=MONDAY
    ) as parser:
        assert parser.version == "tiny-llm"
        intent = parser.parse(text)
        # The server's flexibility is taken as given, not replaced by the default of 0.
        assert intent == Intent(6, 1, 15, 2, frozenset({"projector"}), 1)
        assert parser.last_usage == TokenUsage(input_tokens=187, output_tokens=42)
        # The version is what the server says answered, so a new snapshot is a new version.
        assert (parser.system, parser.model, parser.version) == (
            "openai",
            "tiny-llm",
            "tiny-llm-2026-11-01",
        )
    [call] = openai_server.seen
    assert call["path"] == "/v1/chat/completions"
    assert call["auth"] == "Bearer sk-test"
    body = call["body"]
    assert body["model"] == "tiny-llm" and body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"] == text
    assert "2026-11-23" in body["messages"][0]["content"]


def test_openai_compatible_parser_reports_missing_fields(openai_server: FakeOpenAI) -> None:
    openai_server.content = (
        '{"people": null, "day_offset": 1, "start_hour": null, '
        '"duration_hours": null, "equipment": []}'
    )
    with OpenAICompatibleParser(openai_server.url, "tiny-llm") as parser:
        intent = parser.parse("a room tomorrow")
    assert intent.missing() == ["people", "start_hour", "duration_hours"]
    assert openai_server.seen[0]["auth"] is None


def test_openai_compatible_parser_errors_are_intent_parse_errors(
    openai_server: FakeOpenAI,
) -> None:
    with OpenAICompatibleParser(openai_server.url, "tiny-llm") as parser:
        openai_server.status = 503
        with pytest.raises(IntentParseError, match="HTTP 503"):
            parser.parse("a room")
        openai_server.status, openai_server.content = 200, "I cannot help with that."
        with pytest.raises(IntentParseError, match="did not answer JSON"):
            parser.parse("a room")
    with (
        OpenAICompatibleParser("http://127.0.0.1:9", "m", timeout=2) as dead,
        pytest.raises(IntentParseError, match="could not be reached"),
    ):
        dead.parse("a room")
