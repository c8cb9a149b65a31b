"""The hash chain: canonical events, and tampering found at the first event it touches."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.audit import chain, heads, jcs, merkle
from app.audit.chain import GENESIS, ChainFailure, Record, canonical, event_hash, verify_chain

START = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def make_event(seq: int) -> dict[str, Any]:
    payloads: list[dict[str, Any]] = [
        {"policy": "pii-guard", "outcome": "deny", "score": 0.25},
        {"trace_id": f"{seq:032x}", "models": {"llm": "7", "planner": "3"}, "tokens": [12, 40]},
        {"note": "café ✓ 😀", "nested": {"list": [None, True, False, -1.5e-7]}},
        {},
    ]
    return {
        "seq": seq,
        "project": "shop",
        "kind": ["policy.evaluation", "request", "annotation", "heartbeat"][seq % 4],
        "created_at": chain.format_time(START + timedelta(seconds=seq)),
        "payload": copy.deepcopy(payloads[seq % 4]),
    }


def build(count: int) -> list[Record]:
    records: list[Record] = []
    prev = GENESIS
    for seq in range(1, count + 1):
        event = make_event(seq)
        digest = event_hash(prev, event)
        records.append((event, prev, digest))
        prev = digest
    return records


N = 24
RECORDS = build(N)


def test_canonical_is_the_jcs_of_the_five_fields() -> None:
    for event, _, _ in RECORDS:
        assert canonical(event) == jcs.dumps(event)
        shuffled = dict(reversed(list(event.items())))
        shuffled["payload"] = dict(reversed(list(event["payload"].items())))
        assert canonical(shuffled) == canonical(event)
    event = make_event(1)
    assert canonical(event) == (
        b'{"created_at":"2025-01-02T03:04:06.678901Z","kind":"request","payload":'
        b'{"models":{"llm":"7","planner":"3"},"tokens":[12,40],'
        b'"trace_id":"00000000000000000000000000000001"},"project":"shop","seq":1}'
    )


def test_event_hash_is_sha256_of_prev_and_canonical_bytes() -> None:
    import hashlib

    event = make_event(5)
    assert event_hash(GENESIS, event) == hashlib.sha256(bytes(32) + canonical(event)).digest()
    assert bytes(32) == GENESIS
    assert chain.merkle_leaf(RECORDS[0][2]) == merkle.leaf_hash(RECORDS[0][2])
    with pytest.raises(ValueError, match="32-byte"):
        event_hash(b"short", event)


def test_an_aware_datetime_gives_the_same_bytes_as_its_utc_string() -> None:
    event = make_event(3)
    as_string = canonical(event)
    event["created_at"] = (START + timedelta(seconds=3)).astimezone(timezone(timedelta(hours=-5)))
    assert canonical(event) == as_string
    assert chain.parse_time("2025-01-02T03:04:08.678901Z") == START + timedelta(seconds=3)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 0),
        ("seq", True),
        ("seq", 1.0),
        ("seq", 2**53),
        ("project", ""),
        ("kind", 7),
        ("created_at", "2025-01-02T03:04:05Z"),
        ("created_at", "2025-01-02T03:04:05.678901+00:00"),
        ("created_at", "2025-01-02 03:04:05.678901Z"),
        ("created_at", "2025-02-30T03:04:05.678901Z"),
        ("created_at", datetime(2025, 1, 2, 3, 4, 5)),
        ("created_at", 1735787045),
        ("payload", [1, 2]),
        ("payload", {"score": float("nan")}),
        ("payload", {"score": float("inf")}),
        ("payload", {"big": 2**60}),
        ("payload", {"bytes": b"raw"}),
    ],
)
def test_events_without_a_canonical_form_are_refused(field: str, value: object) -> None:
    event = make_event(2)
    event[field] = value
    with pytest.raises(ValueError):
        canonical(event)


def test_an_event_has_exactly_five_fields() -> None:
    event = make_event(2)
    event["hash"] = "deadbeef"
    with pytest.raises(ValueError, match="unknown \\['hash'\\]"):
        canonical(event)
    del event["hash"], event["kind"]
    with pytest.raises(ValueError, match="missing \\['kind'\\]"):
        canonical(event)


def test_an_untouched_chain_verifies() -> None:
    result = verify_chain(RECORDS)
    assert result.ok and result.failure is None and result.seq is None
    assert result.verified == N and result.last_hash == RECORDS[-1][2]
    assert verify_chain([]).ok and verify_chain([]).last_hash == GENESIS
    # ... and so does any part of it, given the hash and seq it continues from.
    middle = verify_chain(RECORDS[10:], start_prev=RECORDS[9][2], first_seq=11)
    assert middle.ok and middle.verified == N - 10
    forgot_first_seq = verify_chain(RECORDS[10:], start_prev=RECORDS[9][2])
    assert (forgot_first_seq.failure, forgot_first_seq.seq) == (ChainFailure.GAP, 1)


def assert_fails(records: list[Record], failure: ChainFailure, seq: int) -> None:
    result = verify_chain(records)
    assert not result.ok
    assert (result.failure, result.seq) == (failure, seq), result.detail
    assert result.verified == seq - 1 == result.index
    assert result.last_hash == (records[seq - 2][2] if seq > 1 else GENESIS)


def test_any_changed_byte_of_a_payload_is_found_at_its_event() -> None:
    tried = 0
    for position in range(N):
        event, prev, digest = RECORDS[position]
        seq = event["seq"]
        text = jcs.dumps(event["payload"]).decode("utf-8")
        for i in range(len(text)):
            for replacement in '0a"}':
                if replacement == text[i]:
                    continue
                try:
                    changed = json.loads(text[:i] + replacement + text[i + 1 :])
                except ValueError:
                    continue
                if not isinstance(changed, dict) or jcs.dumps(changed) == jcs.dumps(
                    event["payload"]
                ):
                    continue
                forged = {**event, "payload": changed}
                records = [*RECORDS[:position], (forged, prev, digest), *RECORDS[position + 1 :]]
                assert_fails(records, ChainFailure.HASH_MISMATCH, seq)
                tried += 1
    assert tried > 200


def test_every_field_is_covered_by_the_hash() -> None:
    event, prev, digest = RECORDS[6]
    changes = {
        "project": "shop2",
        "kind": "request2",
        "created_at": "2025-01-02T03:04:11.678902Z",
    }
    for field, value in changes.items():
        forged = {**event, field: value}
        records = [*RECORDS[:6], (forged, prev, digest), *RECORDS[7:]]
        assert_fails(records, ChainFailure.HASH_MISMATCH, 7)


def test_a_recomputed_hash_breaks_the_link_to_the_next_event() -> None:
    event, prev, _ = RECORDS[8]
    forged = {**event, "payload": {"outcome": "allow"}}
    records = [*RECORDS[:8], (forged, prev, event_hash(prev, forged)), *RECORDS[9:]]
    assert_fails(records, ChainFailure.BROKEN_LINK, 10)
    # A changed prev_hash alone is a broken link too.
    event, _, digest = RECORDS[3]
    assert_fails(
        [*RECORDS[:3], (event, bytes(32), digest), *RECORDS[4:]], ChainFailure.BROKEN_LINK, 4
    )


def test_a_deleted_event_is_a_gap_at_its_seq() -> None:
    for position in range(N - 1):
        assert_fails(RECORDS[:position] + RECORDS[position + 1 :], ChainFailure.GAP, position + 1)


def test_reordered_events_are_found_where_the_order_breaks() -> None:
    for position in range(N - 1):
        swapped = list(RECORDS)
        swapped[position], swapped[position + 1] = swapped[position + 1], swapped[position]
        assert_fails(swapped, ChainFailure.REORDERED, position + 1)
    moved = [*RECORDS[:3], *RECORDS[4:15], RECORDS[3], *RECORDS[15:]]
    assert_fails(moved, ChainFailure.REORDERED, 4)
    moved_back = [*RECORDS[:3], RECORDS[15], *RECORDS[3:15], *RECORDS[16:]]
    assert_fails(moved_back, ChainFailure.REORDERED, 4)


def test_an_inserted_event_is_found_at_the_first_event_it_displaces() -> None:
    # A replayed copy of an earlier event.
    assert_fails([*RECORDS[:10], RECORDS[4], *RECORDS[10:]], ChainFailure.REORDERED, 11)
    # A forged event that links properly to its predecessor: the next genuine event then
    # repeats its seq.
    forged = {**make_event(11), "payload": {"outcome": "allow"}}
    prev = RECORDS[9][2]
    inserted = [*RECORDS[:10], (forged, prev, event_hash(prev, forged)), *RECORDS[10:]]
    assert_fails(inserted, ChainFailure.REORDERED, 12)
    # A forged event with a made-up hash.
    inserted = [*RECORDS[:10], (forged, prev, bytes(32)), *RECORDS[10:]]
    assert_fails(inserted, ChainFailure.HASH_MISMATCH, 11)


def test_malformed_records_are_reported_not_raised() -> None:
    event, prev, digest = RECORDS[2]
    for bad in [
        (event, prev),
        "not a record",
        ({**event, "seq": "3"}, prev, digest),
        ({**event, "payload": {"x": float("nan")}}, prev, digest),
        ({**event, "extra": 1}, prev, digest),
    ]:
        assert_fails([*RECORDS[:2], bad, *RECORDS[3:]], ChainFailure.MALFORMED, 3)  # type: ignore[list-item]


def test_truncation_is_invisible_to_the_chain_and_caught_by_a_signed_head() -> None:
    key = heads.generate_key()
    leaves = [chain.merkle_leaf(digest) for _, _, digest in RECORDS]
    head = heads.sign_head(key, "shop", N, merkle.root(leaves), START)

    truncated = RECORDS[:-3]
    result = verify_chain(truncated)
    assert result.ok and result.verified == N - 3  # the chain alone cannot tell

    # The auditor holds the head: the log must be at least that long, and its first
    # head.tree_size events must hash to the signed root.
    assert heads.verify_head(head, key.public_key())
    assert result.verified < head.tree_size
    kept = [chain.merkle_leaf(digest) for _, _, digest in truncated]
    assert merkle.root(kept) != head.root_hash


def test_a_rewritten_tail_verifies_as_a_chain_but_not_against_the_head() -> None:
    # Rewriting an event and recomputing every later hash makes a valid chain; what gives it
    # away is the signed root, which commits to the old hashes.
    key = heads.generate_key()
    leaves = [chain.merkle_leaf(digest) for _, _, digest in RECORDS]
    head = heads.sign_head(key, "shop", N, merkle.root(leaves), START)
    rewritten: list[Record] = list(RECORDS[:5])
    prev = RECORDS[4][2]
    for event, _, _ in RECORDS[5:]:
        if event["seq"] == 6:
            event = {**event, "payload": {"outcome": "allow"}}
        digest = event_hash(prev, event)
        rewritten.append((event, prev, digest))
        prev = digest
    assert verify_chain(rewritten).ok
    assert merkle.root([chain.merkle_leaf(d) for _, _, d in rewritten]) != head.root_hash
