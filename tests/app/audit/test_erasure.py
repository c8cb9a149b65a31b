"""Retained inputs are sealed per subject; erasing a subject makes theirs unreadable, and the
ledger still verifies."""

from __future__ import annotations

from sqlalchemy import select

from app.audit import erasure, heads, retention
from app.audit.ledger import checkpoints
from app.store.tables import Request, RequestPayload, Score, Span, SubjectKey
from app.tenancy import projects
from collectors import conventions as wire
from tests import otlp
from tests.app.audit.conftest import events, verify
from tests.conftest import LiveService

SECRET_INPUT = '{"text":"a room for six, Anna Example, +49 170 0000000"}'


def _send(live: LiveService, key: str, ids: otlp.Ids, subject: str | None) -> str:
    attrs = {wire.REQUEST_INPUT: SECRET_INPUT}
    if subject:
        attrs[wire.REQUEST_SUBJECT] = subject
    spans = otlp.hybrid_trace(ids, **attrs)
    with live.client(key) as client:
        body = otlp.request(spans).SerializeToString()
        assert client.post("/v1/traces", content=body, headers=otlp.PROTOBUF).status_code == 200
    return spans[0].trace_id.hex()


def test_erasing_a_subject_makes_their_inputs_unreadable_and_the_ledger_verifies(
    live: LiveService,
) -> None:
    key = live.key("shop", "ingest", "read", "admin")
    engine = live.engine
    vault = erasure.Vault(live.settings.server_secret())  # as the service makes it
    pid = projects.project_id(engine, "shop")
    ids = otlp.Ids(21)
    anna = [_send(live, key, ids, "anna"), _send(live, key, ids, "anna")]
    bob = _send(live, key, ids, "bob")
    anonymous = _send(live, key, ids, None)

    # Stored sealed, never in the clear: not in the span, not in the payload table.
    with engine.connect() as conn:
        attributes = conn.execute(
            select(Span.attributes).where(Span.trace_id == anna[0], Span.parent_span_id.is_(None))
        ).scalar_one()
        sealed = conn.execute(select(RequestPayload.ciphertext)).scalars().all()
        keys = conn.execute(select(SubjectKey.subject, SubjectKey.key)).all()
    assert wire.REQUEST_INPUT not in attributes
    assert len(sealed) == 4 and all(b"Anna" not in bytes(c) for c in sealed)
    assert {s for s, _ in keys} == {"anna", "bob", None}  # None: the per-request key
    for trace in (*anna, bob, anonymous):
        assert erasure.read_input(engine, vault, pid, trace).text == SECRET_INPUT
    request_events = {e.payload["trace_id"]: e.payload for e in events(engine, pid)
                      if e.kind == "request"}  # fmt: skip
    assert all(request_events[t]["input_retained"] for t in (*anna, bob, anonymous))
    pseudonym = request_events[anna[0]]["subject"]
    assert request_events[anna[1]]["subject"] == pseudonym != request_events[bob]["subject"]

    signing = checkpoints.signing_key(live.settings)
    with live.client(key) as client:
        before = client.post("/v1/audit/heads").raise_for_status().json()
        done = client.post("/v1/audit/erasures", json={"subject": "anna", "reason": "Art. 17"})
        assert done.status_code == 200, done.text
        assert done.json() == {"subject_pseudonym": pseudonym, "payloads": 2, "requests": 2,
                               "seq": before["tree_size"] + 1}  # fmt: skip
        assert client.post("/v1/audit/erasures", json={"subject": "anna"}).status_code == 404
        detail = client.get(f"/v1/requests/{anna[0]}").json()
    assert detail["subject"] is None
    root = next(s for s in detail["spans"] if s["parent_span_id"] is None)
    assert wire.REQUEST_SUBJECT not in root["attributes"]

    for trace in anna:
        assert erasure.read_input(engine, vault, pid, trace).state == "erased"
    assert erasure.read_input(engine, vault, pid, bob).text == SECRET_INPUT
    assert erasure.read_input(engine, vault, pid, anonymous).text == SECRET_INPUT
    with engine.connect() as conn:
        assert conn.execute(
            select(Request.trace_id).where(Request.subject == "anna")
        ).first() is None
        tomb = conn.execute(select(SubjectKey).where(SubjectKey.pseudonym == pseudonym)).one()
    assert tomb.subject is None and tomb.key is None and tomb.destroyed_at is not None
    erased = [e for e in events(engine, pid) if e.kind == "erasure"]
    assert erased[0].payload["subject_pseudonym"] == pseudonym
    assert "anna" not in str([e.payload for e in events(engine, pid)])

    # Every event hashed before the erasure still verifies, against the head signed before.
    with live.client(key) as client:
        client.post("/v1/audit/heads").raise_for_status()
    report = verify(engine, "shop", signing, heads.head_from_json(before))
    assert report.ok, report.message

    # Anna comes back later: a new key and a new pseudonym, unlinkable to the erased one.
    again = _send(live, key, ids, "anna")
    assert erasure.read_input(engine, vault, pid, again).text == SECRET_INPUT
    payload = next(e.payload for e in events(engine, pid) if e.payload.get("trace_id") == again)
    assert payload["subject"] != pseudonym


def test_a_legal_hold_suspends_erasure(live: LiveService) -> None:
    key = live.key("shop", "ingest", "admin")
    engine = live.engine
    pid = projects.project_id(engine, "shop")
    _send(live, key, otlp.Ids(22), "carl")
    hold = retention.place_hold(engine, pid, "test", "case 7", subject="carl")
    with live.client(key) as client:
        refused = client.post("/v1/audit/erasures", json={"subject": "carl"})
        assert refused.status_code == 409 and "legal hold" in refused.json()["detail"]
        retention.release_hold(engine, pid, hold.id, "test")
        assert client.post("/v1/audit/erasures", json={"subject": "carl"}).status_code == 200
    placed = next(e for e in events(engine, pid) if e.kind == "legal_hold.placed")
    assert "carl" not in str(placed.payload) and len(placed.payload["subject"]) == 32


def test_erasing_a_subject_clears_the_comments_of_their_scores(live: LiveService) -> None:
    """A comment is free text about the request: it goes with the subject, from the score and
    from the span that brought it; the value and the correction stay, and the ledger verifies."""
    key = live.key("shop", "ingest", "read", "admin")
    engine = live.engine
    pid = projects.project_id(engine, "shop")
    ids = otlp.Ids(31)
    anna, bob = _send(live, key, ids, "anna"), _send(live, key, ids, "bob")
    comment = "Anna Example called back: wanted the room on floor 2"
    span = otlp.span(
        ids.trace(), ids.span(), wire.SCORE_SPAN,
        attrs={wire.SCORE_REQUEST: anna, wire.SCORE_NAME: "correction", wire.SCORE_VALUE: True,
               wire.SCORE_SOURCE: "human", wire.SCORE_COMMENT: comment},
    )  # fmt: skip
    with live.client(key) as client:
        body = otlp.request([span]).SerializeToString()
        assert client.post("/v1/traces", content=body, headers=otlp.PROTOBUF).status_code == 200
        for request in (anna, bob):
            posted = client.post(
                f"/v1/requests/{request}/scores",
                json={"name": "rating", "value": 2, "source": "user", "comment": comment,
                      "correction": {"action": "room-b@15:00"}},
            )  # fmt: skip
            assert posted.status_code == 201, posted.text

    def comments() -> dict[str, list[str | None]]:
        with engine.connect() as conn:
            rows = conn.execute(select(Score.trace_id, Score.comment)).all()
        found: dict[str, list[str | None]] = {}
        for trace, text in rows:
            found.setdefault(trace, []).append(text)
        return found

    def span_comment() -> str | None:
        with engine.connect() as conn:
            attributes = conn.execute(
                select(Span.attributes).where(Span.trace_id == span.trace_id.hex())
            ).scalar_one()
        return attributes.get(wire.SCORE_COMMENT)

    assert comments() == {anna: [comment, comment], bob: [comment]}
    assert span_comment() == comment
    erasure.erase_subject(engine, pid, "anna", "dpo", "art. 17 request")
    assert comments() == {anna: [None, None], bob: [comment]}
    assert span_comment() is None
    with engine.connect() as conn:
        kept = conn.execute(select(Score.value, Score.correction).where(Score.trace_id == anna))
        assert sorted(kept, key=lambda r: r.value) == [
            (1.0, None), (2.0, {"action": "room-b@15:00"}),
        ]  # fmt: skip
    with live.client(key) as client:
        client.post("/v1/audit/heads").raise_for_status()
    report = verify(engine, "shop", checkpoints.signing_key(live.settings))
    assert report.ok, report.message
