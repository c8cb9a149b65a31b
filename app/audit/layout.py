"""What is where in an export bundle, and the byte formats the exporter and verifier share.

A bundle is a zip:

    manifest.json              scope, counts, ledger range, heads, policy sets, lineage,
                               SHA-256 and record count of every other file (signed)
    manifest.sig               Ed25519 signature of manifest.json's exact bytes (64 raw bytes)
    public-key.pem             the signer's public key, for convenience only: verify with
                               the key you trust (`warden verify --public-key`)
    records/<table>.jsonl      one JSON object per line, and the same rows as
    records/<table>.parquet    Parquet (row groups of `PARQUET_ROW_GROUP` rows)
    ledger/events.jsonl        the ledger events, one `event_line` each, in seq order
    ledger/proofs.jsonl        partial scope only: one inclusion proof per run of events
    ledger/heads.jsonl         earlier signed heads, each with a consistency proof to the anchor
    drift/reports.jsonl        drift reports in the period
    report.html, report.pdf    the human-readable report

An event line is itself canonical JSON (members sorted, no whitespace) and carries the
event's canonical bytes verbatim, so a verifier hashes exactly the bytes it reads:

    {"event":<canonical(event)>,"hash":"<64 hex>","prev_hash":"<64 hex>"}
"""

from __future__ import annotations

FORMAT = "warden-export-v1"

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public-key.pem"
EVENTS = "ledger/events.jsonl"
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
    "model_versions",
)
REQUESTS = "records/requests.jsonl"
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
    """`records/requests.jsonl` and the like."""
    return f"records/{table}.{extension}"


def event_line(canonical: bytes, event_hash: bytes, prev_hash: bytes) -> bytes:
    """The line of `ledger/events.jsonl` for one event, without the newline.

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
