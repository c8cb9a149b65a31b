"""What is where in an export bundle, and the byte formats the exporter and verifier share.

A bundle is a zip:

    manifest.json              scope, counts, ledger range, heads, policy sets, lineage,
                               SHA-256 and record count of every other file (signed)
    manifest.sig               Ed25519 signature of manifest.json's exact bytes (64 raw bytes)
    public-key.pem             the signer's public key, for convenience only: verify with
                               the key you trust (`warden verify --public-key`)
    ledger/events-00001.jsonl  the ledger events, one `event_line` each, in seq order, in
    ledger/events-00002.jsonl  numbered parts of at most `PART_EVENTS` events (at least one
    ...                        part, maybe empty)
    records/requests-00001.jsonl  the request records whose events are in events part 1, in
    ...                        the same order; one requests part per events part (maybe
                               empty), then parts of at most `PART_EVENTS` requests stored
                               before the ledger began (`ledger` null)
    records/requests.parquet   all request records as Parquet
    records/<table>.jsonl      the other tables, one JSON object per line, and the same rows
    records/<table>.parquet    as Parquet (row groups of `PARQUET_ROW_GROUP` rows)
    ledger/proofs.jsonl        partial scope only: one inclusion proof per run of events
    ledger/heads.jsonl         earlier signed heads, each with a consistency proof to the anchor
    drift/reports.jsonl        drift reports in the period
    report.html, report.pdf    the human-readable report

The parts let a verifier check a large bundle in parallel, a part per process: a deflated
member can only be read from its start. An event line is itself canonical JSON (members
sorted, no whitespace) and carries the event's canonical bytes verbatim, so a verifier hashes
exactly the bytes it reads:

    {"event":<canonical(event)>,"hash":"<64 hex>","prev_hash":"<64 hex>"}

A request record ends with a reference to its event, `ledger_reference`:

    ...,"ledger":{"hash":"<64 hex>","seq":<seq>}}
"""

from __future__ import annotations

import re

FORMAT = "warden-export-v2"
# Events per part of the ledger (and request records per part of those without an event). Small
# enough that a verifier's processes share a large bundle evenly (a million records: 31 parts);
# a power of two, so that in a full bundle each whole part is one subtree of the Merkle tree.
PART_EVENTS = 32_768

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public-key.pem"
PROOFS = "ledger/proofs.jsonl"
HEADS = "ledger/heads.jsonl"
DRIFT = "drift/reports.jsonl"
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"
# Files outside the manifest's list: the manifest itself, its signature and the key.
UNLISTED = frozenset({MANIFEST, SIGNATURE, PUBLIC_KEY})

RECORD_TABLES = (
    "requests",
    "request_models",
    "spans",
    "world_model_states",
    "planner_decisions",
    "policy_evaluations",
    "reviews",
    "scores",
    "model_versions",
)
PARQUET_ROW_GROUP = 65_536

FULL = "full"
PARTIAL = "partial"

REQUEST_KIND = "request"
ERASURE_KIND = "erasure"
POLICY_SET_KIND = "policy_set.changed"
EXPORT_KIND = "export.produced"

# Members of event payloads the bundle relies on (docs/audit.md, "The live ledger").
SUBJECT_MEMBER = "subject"  # a request event's subject pseudonym
ERASED_MEMBER = "subject_pseudonym"  # an erasure event's
# Members a request event shares with its request record: they must agree.
REQUEST_MEMBERS = (
    "root_span_id", "fingerprint", "fingerprint_key_id", "outcome", "status", "models"
)  # fmt: skip

_PART = re.compile(r"(ledger/events|records/requests)-(\d{5,})\.jsonl")
_EVENT_HEAD = b'{"event":'
_HASH_TAG = b',"hash":"'
_PREV_TAG = b'","prev_hash":"'
_END = b'"}'
_TAIL = len(_HASH_TAG) + 64 + len(_PREV_TAG) + 64 + len(_END)


def subject_pseudonym(payload: object) -> str | None:
    """The pseudonym a request event's payload names its subject by, if any."""
    value = payload.get(SUBJECT_MEMBER) if isinstance(payload, dict) else None
    return value if isinstance(value, str) and value else None


def erased_pseudonym(kind: str, payload: object) -> str | None:
    """The pseudonym an `erasure` event erased, if `kind` is one and names one."""
    if kind != ERASURE_KIND or not isinstance(payload, dict):
        return None
    value = payload.get(ERASED_MEMBER)
    return value if isinstance(value, str) and value else None


def records_path(table: str, extension: str = "jsonl") -> str:
    """`records/spans.jsonl` and the like (the request records are in parts)."""
    return f"records/{table}.{extension}"


def events_part(number: int) -> str:
    """The name of the `number`th part of the ledger (from 1).

    >>> events_part(1)
    'ledger/events-00001.jsonl'
    """
    return f"ledger/events-{number:05d}.jsonl"


def requests_part(number: int) -> str:
    """The name of the `number`th part of the request records (from 1)."""
    return f"records/requests-{number:05d}.jsonl"


def part_number(name: str) -> tuple[str, int] | None:
    """("events", n) or ("requests", n) for the name of a part, else None.

    >>> part_number("records/requests-00012.jsonl"), part_number("records/requests.jsonl")
    (('requests', 12), None)
    """
    found = _PART.fullmatch(name)
    if found is None:
        return None
    kind, number = ("events" if found[1] == "ledger/events" else "requests"), int(found[2])
    canonical = events_part(number) if kind == "events" else requests_part(number)
    return (kind, number) if number and name == canonical else None


def ledger_reference(seq: int, event_hash: bytes) -> bytes:
    """A request record's `ledger` member: the seq and hash of its event.

    >>> ledger_reference(7, bytes(32))[:20]
    b'{"hash":"00000000000'
    """
    return b'{"hash":"%s","seq":%d}' % (event_hash.hex().encode(), seq)


def event_line(canonical: bytes, event_hash: bytes, prev_hash: bytes) -> bytes:
    """The line of an events part for one event, without the newline.

    >>> event_line(b'{"seq":1}', bytes(32), bytes(32))[:22]
    b'{"event":{"seq":1},"ha'
    """
    return b"".join(
        (_EVENT_HEAD, canonical, _HASH_TAG, event_hash.hex().encode(), _PREV_TAG,
         prev_hash.hex().encode(), _END)
    )  # fmt: skip


def split_event_line(line: bytes) -> tuple[bytes, str, str] | None:
    """(canonical bytes, hash hex, prev_hash hex) of an event line, or None if malformed.

    Only the frame is checked here; the caller checks the hex and the canonical event.
    """
    if len(line) <= len(_EVENT_HEAD) + _TAIL or not line.startswith(_EVENT_HEAD):
        return None
    tail = line[-_TAIL:]
    hash_start = len(_HASH_TAG)
    prev_start = hash_start + 64 + len(_PREV_TAG)
    if (
        not tail.startswith(_HASH_TAG)
        or tail[hash_start + 64 : prev_start] != _PREV_TAG
        or not tail.endswith(_END)
    ):
        return None
    canonical = line[len(_EVENT_HEAD) : -_TAIL]
    return (
        canonical,
        tail[hash_start : hash_start + 64].decode("ascii", "replace"),
        tail[prev_start : prev_start + 64].decode("ascii", "replace"),
    )
