"""The audit page's view of the ledger: its size and heads, its newest events, and a full
verification (the same check as `warden audit verify`) against the service's own key."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine

from app.audit import ledger
from app.audit.ledger import checkpoints
from app.audit.ledger.verify import Report, trusted_keys, verify_project
from app.store.dialect import consistent_snapshot

RECENT = 15


def status(engine: Engine, project_id: int) -> dict[str, Any]:
    """Size and root of the ledger now, its newest signed heads and events."""
    state = checkpoints.head_state(engine, project_id)
    size = state.tree_size
    recent = (
        ledger.list_events(engine, project_id, max(1, size - RECENT + 1), RECENT).items
        if size
        else []
    )
    return {
        "size": size,
        "root": state.root_hash,
        "heads": checkpoints.list_heads(engine, project_id, limit=10),
        "events": list(reversed(recent)),
    }


def verify(engine: Engine, project: str, public_key: Ed25519PublicKey) -> Report:
    """Recompute every hash and link, every signed head's root and signature."""
    with engine.connect() as conn:
        return verify_project(consistent_snapshot(conn), project, trusted_keys([public_key]))
