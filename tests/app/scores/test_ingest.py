"""Score spans over OTLP: a root span carrying `warden.score.request` becomes a score, never a
request; a resend stores nothing twice; one that fails is reported in `partial_success` and
leaves its span, but no score and no ledger event."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from app.store.tables import Request, Score, Span
from collectors import conventions as wire
from tests import otlp
from tests.app.scores.scoring import requests, score_events, score_span, send
from tests.conftest import LiveService


def _count(live: LiveService, table: type) -> int:
    with live.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_score_span_becomes_a_score_not_a_request_and_a_resend_adds_nothing(
    live: LiveService,
) -> None:
    sender = live.client(live.key("shop", "ingest"))
    reader = live.client(live.key("shop", "read"))
    ids = otlp.Ids(21)
    [request_id] = requests(sender, ids, 1)
    spans = [
        score_span(ids, request_id, "plan_success", True),
        score_span(
            ids, request_id, "correction", True,
            **{wire.SCORE_SOURCE: "human", wire.SCORE_AUTHOR: "ops-7",
               wire.SCORE_COMMENT: "wrong room", wire.SCORE_CORRECTION: '{"action": "room-b"}'},
        ),
    ]  # fmt: skip
    answer = send(sender, spans)
    assert answer.partial_success.rejected_spans == 0, answer.partial_success.error_message
    assert _count(live, Request) == 1  # the score spans made no request
    listed = reader.get(f"/v1/requests/{request_id}/scores").json()["items"]
    keys = {f"{s.trace_id.hex()}:{s.span_id.hex()}" for s in spans}
    assert {s["key"] for s in listed} == keys
    correction = next(s for s in listed if s["name"] == "correction")
    assert correction["correction"] == {"action": "room-b"}
    assert (correction["author"], correction["source"]) == ("ops-7", "human")
    # The span itself is stored like every span.
    trace = reader.get(f"/v1/traces/{spans[0].trace_id.hex()}").json()
    assert [s["name"] for s in trace["spans"]] == [wire.SCORE_SPAN]

    again = send(sender, spans)
    assert again.partial_success.rejected_spans == 0
    assert _count(live, Score) == 2
    assert len(score_events(live.engine, "shop")) == 2


def test_a_score_span_that_fails_is_reported_and_stores_no_score(live: LiveService) -> None:
    sender = live.client(live.key("shop", "ingest"))
    admin = live.client(live.key("shop", "admin"))
    ids = otlp.Ids(22)
    [request_id] = requests(sender, ids, 1)
    [foreign] = requests(live.client(live.key("other", "ingest")), ids, 1)
    admin.put(
        "/v1/score-configs/rating", json={"data_type": "numeric", "min_value": 1, "max_value": 5}
    ).raise_for_status()
    good = score_span(ids, request_id, "rating", 4)
    too_high = score_span(ids, request_id, "rating", 7)
    elsewhere = score_span(ids, foreign, "rating", 3)
    answer = send(sender, [good, too_high, elsewhere])
    assert answer.partial_success.rejected_spans == 2
    message = answer.partial_success.error_message
    assert "2 score spans were stored as spans but not recorded as scores" in message

    # The first refusal in key order names the field.
    def key(span: Any) -> str:
        return f"{span.trace_id.hex()}:{span.span_id.hex()}"

    refused = sorted(
        [
            (key(too_high), "value: 7 is above the maximum 5"),
            (key(elsewhere), f"request: no request '{foreign}'"),
        ]
    )
    assert f"score {refused[0][0]}: {refused[0][1]}" in message
    with live.engine.connect() as conn:
        assert conn.execute(select(Score.score_key)).scalars().all() == [key(good)]
        assert conn.execute(select(func.count()).select_from(Span).where(
            Span.name == wire.SCORE_SPAN)).scalar_one() == 3  # fmt: skip
    assert [e["value"] for e in score_events(live.engine, "shop")] == [4.0]
    assert score_events(live.engine, "other") == []
    # Sent again: refused again, still nothing stored.
    assert send(sender, [too_high]).partial_success.rejected_spans == 1
    assert _count(live, Score) == 1
