"""The audit hash chain: canonical events, each hash covering the one before.

An event has exactly five fields:

| field        | type                                                        |
|--------------|-------------------------------------------------------------|
| `seq`        | int, 1, 2, 3, ... within a project, at most 2^53 - 1        |
| `project`    | non-empty str                                               |
| `kind`       | non-empty str                                               |
| `created_at` | RFC 3339 UTC with microseconds and `Z`, e.g.                |
|              | `2025-01-02T03:04:05.678901Z` (or an aware datetime)        |
| `payload`    | a JSON object (a Mapping with str keys)                     |

    canonical(event)        = JCS (RFC 8785, see `jcs`) of the five fields, UTF-8
    event_hash(prev, event) = SHA-256(prev || canonical(event))       prev: 32 bytes
    prev of seq 1           = GENESIS, 32 zero bytes

The ledger's Merkle tree (`merkle`) has one leaf per event, in seq order, whose data is the
32-byte event hash: leaf hash = SHA-256(0x00 || event_hash), see `merkle_leaf`.

What the chain alone catches: any changed byte of an event, a changed or recomputed hash
that the next event no longer links to, a missing, repeated or moved event. What it cannot
catch: events cut off at the tail — the shorter chain is still a valid chain. Signed tree
heads (`heads`) close that gap: a head commits to the size and root of the log at a moment,
so a log shorter than a head it once signed is caught.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from json.encoder import encode_basestring
from typing import Any

from app.audit import fastjcs, jcs, merkle

GENESIS = bytes(32)
FIELDS = frozenset({"seq", "project", "kind", "created_at", "payload"})

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_TIME_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")

Event = Mapping[str, Any]


def format_time(when: datetime) -> str:
    """RFC 3339 in UTC with exactly six fraction digits and `Z`.

    >>> from datetime import timedelta, timezone
    >>> format_time(datetime(2025, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))))
    '2025-01-02T03:04:05.000000Z'
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{when!r} has no time zone; pass an aware datetime, e.g. in UTC")
    return when.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """The aware UTC datetime of a `format_time` string; anything else raises ValueError."""
    if not isinstance(text, str) or not _TIME_PATTERN.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a UTC time of the form 2025-01-02T03:04:05.678901Z "
            "(RFC 3339, six fraction digits, Z)"
        )
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)  # checks the calendar


def _created_at(value: object) -> str:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, str):
        parse_time(value)  # checks the form and the calendar
        return value
    raise ValueError(f"created_at must be an RFC 3339 string or an aware datetime, not {value!r}")


def _label(event: Event, field: str) -> str:
    value = event[field]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string, not {value!r}")
    return value


def _seq(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return None


def canonical(event: Event) -> bytes:
    """The canonical bytes of an event: JCS of its five fields, nothing else.

    An unknown field is refused rather than dropped, so nothing rides along unhashed.

    >>> canonical({"seq": 1, "project": "p", "kind": "k",
    ...            "created_at": "2025-01-02T03:04:05.000000Z", "payload": {"b": 1, "a": 2}})
    b'{"created_at":"2025-01-02T03:04:05.000000Z","kind":"k","payload":{"a":2,"b":1},\
"project":"p","seq":1}'
    """
    if not isinstance(event, Mapping):
        raise ValueError(f"an event is a mapping of {sorted(FIELDS)}, not {type(event).__name__}")
    if event.keys() != FIELDS:
        missing, extra = FIELDS - event.keys(), event.keys() - FIELDS
        raise ValueError(
            f"an event has exactly the fields {sorted(FIELDS)}; "
            f"missing {sorted(missing)}, unknown {sorted(map(str, extra))}"
        )
    seq = _seq(event["seq"])
    if seq is None or seq > jcs.MAX_SAFE_INTEGER:
        raise ValueError(f"seq must be an int from 1 to 2^53 - 1, not {event['seq']!r}")
    payload = event["payload"]
    if not isinstance(payload, Mapping):
        raise ValueError(f"payload must be a JSON object (a mapping), not {type(payload).__name__}")
    # The members in JCS order, written out: the same bytes as jcs.dumps of the five fields
    # (the payload through fastjcs, which gives jcs's bytes at orjson's speed).
    head = jcs.utf8(
        '{"created_at":'
        + encode_basestring(_created_at(event["created_at"]))
        + ',"kind":'
        + encode_basestring(_label(event, "kind"))
        + ',"payload":'
    )
    tail = jcs.utf8(',"project":' + encode_basestring(_label(event, "project")) + ',"seq":')
    return b"".join((head, fastjcs.dumps(payload), tail, str(seq).encode(), b"}"))


def event_hash(prev_hash: bytes, event: Event) -> bytes:
    """SHA-256(prev_hash || canonical(event)); `prev_hash` is GENESIS for seq 1."""
    if not isinstance(prev_hash, bytes) or len(prev_hash) != 32:
        raise ValueError("prev_hash must be the 32-byte hash of the previous event, or GENESIS")
    return hashlib.sha256(prev_hash + canonical(event)).digest()


def merkle_leaf(event_hash: bytes) -> bytes:
    """The ledger's Merkle leaf hash for an event: SHA-256(0x00 || event_hash)."""
    return merkle.leaf_hash(event_hash)


class ChainFailure(StrEnum):
    HASH_MISMATCH = "hash_mismatch"  # the stored hash is not the hash of the event's bytes
    BROKEN_LINK = "broken_link"  # prev_hash is not the stored hash of the event before
    GAP = "gap"  # a seq is missing and never comes
    REORDERED = "reordered"  # a seq repeats, goes back, or comes later than its place
    MALFORMED = "malformed"  # the record has no canonical form


@dataclass(frozen=True)
class ChainResult:
    """What `verify_chain` found.

    `seq` is the first sequence number the chain cannot vouch for: the seq due at `index`
    (the 0-based position of the failing record). Every event before it verified. `verified`
    counts the records that did, and `last_hash` is the hash of the last of them (the
    `start_prev` to carry on from).
    """

    ok: bool
    verified: int
    last_hash: bytes
    failure: ChainFailure | None = None
    seq: int | None = None
    index: int | None = None
    detail: str = ""


Record = tuple[Event, bytes, bytes]


def _seq_of(record: Record) -> int | None:
    try:
        return _seq(record[0]["seq"])
    except Exception:  # whatever the record is, it has no seq
        return None


def _check(
    record: Record, expected: int, prev: bytes, rest: Iterator[Record]
) -> tuple[ChainFailure, str] | None:
    """What is wrong with one record, given the seq due and the previous hash."""
    try:
        event, prev_hash, stored = record
    except (TypeError, ValueError):
        return ChainFailure.MALFORMED, "a record is (event, prev_hash, hash)"
    seq = _seq_of(record)
    if seq is None:
        return ChainFailure.MALFORMED, f"no valid seq where {expected} is due"
    if seq < expected:
        return ChainFailure.REORDERED, f"seq {seq} comes again where {expected} is due"
    if seq > expected:
        if any(_seq_of(later) == expected for later in rest):
            return ChainFailure.REORDERED, f"seq {seq} comes before {expected}"
        return ChainFailure.GAP, f"seq {expected} is missing; the chain goes on at {seq}"
    if prev_hash != prev:
        return ChainFailure.BROKEN_LINK, f"seq {seq} does not link to the event before it"
    try:
        computed = event_hash(prev, event)
    except ValueError as error:
        return ChainFailure.MALFORMED, f"seq {seq}: {error}"
    if computed != stored:
        return ChainFailure.HASH_MISMATCH, f"seq {seq} is not the event that was hashed"
    return None


def verify_chain(
    records: Iterable[Record], start_prev: bytes = GENESIS, *, first_seq: int = 1
) -> ChainResult:
    """Check (event, prev_hash, hash) records in order, stopping at the first bad one.

    Checks, for each record: its seq is the one due (else GAP or REORDERED), its prev_hash is
    the previous record's hash (else BROKEN_LINK), its hash is SHA-256(prev_hash ||
    canonical(event)) (else HASH_MISMATCH). To verify from the middle of a log, pass the hash
    of the event before as `start_prev` and its seq + 1 as `first_seq`.

    A chain cut short at the tail verifies: compare `verified` with a signed tree head.

    >>> e = {"seq": 1, "project": "p", "kind": "k",
    ...      "created_at": "2025-01-02T03:04:05.000000Z", "payload": {}}
    >>> h = event_hash(GENESIS, e)
    >>> verify_chain([(e, GENESIS, h)]).ok
    True
    >>> verify_chain([(e, GENESIS, bytes(32))]).failure
    <ChainFailure.HASH_MISMATCH: 'hash_mismatch'>
    """
    prev = start_prev
    expected = first_seq
    rest = iter(records)
    for index, record in enumerate(rest):
        problem = _check(record, expected, prev, rest)
        if problem is not None:
            failure, detail = problem
            return ChainResult(
                ok=False,
                verified=index,
                last_hash=prev,
                failure=failure,
                seq=expected,
                index=index,
                detail=detail,
            )
        prev = record[2]
        expected += 1
    return ChainResult(ok=True, verified=expected - first_seq, last_hash=prev)
