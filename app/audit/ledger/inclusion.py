"""A request's event in the audit ledger, and whether a signed head proves it is included.

Ingest appends a request's `request` event in the transaction that stores it, so the event
was created a moment after `requests.ingested_at`. Events are found by a binary search on
seq over their creation times (the `(project_id, seq)` index), then a short forward scan:
a handful of indexed reads whatever the size of the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, select

from app.audit import heads, ledger, merkle
from app.audit.heads import TreeHead
from app.audit.ledger import EVENTS, checkpoints
from app.errors import WardenError
from app.store.engine import read_connection

BEFORE = timedelta(seconds=30)
AFTER = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """A request's `request` event: its place in the ledger and what it covers."""

    seq: int
    hash: str  # hex
    created_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InclusionStatus:
    """Whether the newest signed head proves an event included.

    `status` is `unsigned` (no head yet), `pending` (the head is older than the event),
    `verified` or `failed`; `message` says it in words."""

    status: str
    message: str
    head: TreeHead | None = None
    path: list[str] = field(default_factory=list)  # the audit path, hex, once checked
    path_ok: bool = False
    signature_ok: bool = False


def find_request_event(
    engine: Engine, project_id: int, trace_id: str, ingested_at: datetime
) -> RequestEvent | None:
    """The `request` event of a stored request, or None."""
    with read_connection(engine) as conn:
        head = ledger.read_head(conn, project_id)
        if head is None or head.seq == 0:
            return None

        def created(seq: int) -> datetime:
            value: datetime = conn.execute(
                select(EVENTS.c.created_at).where(
                    EVENTS.c.project_id == project_id, EVENTS.c.seq == seq
                )
            ).scalar_one()
            return value if value.tzinfo else value.replace(tzinfo=ingested_at.tzinfo)

        target = ingested_at - BEFORE
        low, high = 1, head.seq + 1
        while low < high:
            mid = (low + high) // 2
            if created(mid) < target:
                low = mid + 1
            else:
                high = mid
        row = conn.execute(
            select(EVENTS.c.seq, EVENTS.c.hash, EVENTS.c.created_at, EVENTS.c.payload)
            .where(
                EVENTS.c.project_id == project_id,
                EVENTS.c.seq >= low,
                EVENTS.c.kind == ledger.REQUEST,
                EVENTS.c.created_at <= ingested_at + AFTER,
                EVENTS.c.payload["trace_id"].as_string() == trace_id,
            )
            .order_by(EVENTS.c.seq)
            .limit(1)
        ).one_or_none()
    if row is None:
        return None
    return RequestEvent(int(row.seq), bytes(row.hash).hex(), row.created_at, row.payload)


def inclusion_status(
    engine: Engine, project_id: int, seq: int, public_key: Ed25519PublicKey
) -> InclusionStatus:
    """Whether the newest signed head covers event `seq`, and if so whether its inclusion
    proof and the head's signature verify. Reads every event hash up to the head: on a long
    ledger this takes a moment (the dashboard asks for it after its page has shown)."""
    head = checkpoints.latest_head(engine, project_id)
    if head is None:
        return InclusionStatus("unsigned", "no signed tree head yet")
    if head.tree_size < seq:
        return InclusionStatus(
            "pending",
            f"the newest signed head covers {head.tree_size} events; this is event {seq}: "
            "the next head will cover it",
            head,
        )
    try:
        proof = checkpoints.inclusion(engine, project_id, seq, head.tree_size)
    except WardenError as exc:
        return InclusionStatus("failed", exc.message, head)
    leaf = merkle.leaf_hash(proof.event_hash)
    path_ok = merkle.verify_inclusion(leaf, seq - 1, head.tree_size, proof.path, head.root_hash)
    signed_ok = heads.verify_head(head, public_key)
    return InclusionStatus(
        status="verified" if path_ok and signed_ok else "failed",
        message=(
            f"included in the signed head of size {head.tree_size}: the proof of "
            f"{len(proof.path)} hashes leads to its root, and its signature verifies"
            if path_ok and signed_ok
            else "the proof or the head's signature does NOT verify: run `warden audit verify`"
        ),
        head=head,
        path=[p.hex() for p in proof.path],
        path_ok=path_ok,
        signature_ok=signed_ok,
    )
