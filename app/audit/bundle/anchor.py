"""The project's log as an export sees it: the anchor head, the earlier heads, the tree.

The anchor is the newest signed head; if none covers the whole log when the export starts,
one is signed then. Before anything is exported, the log is held against every stored head:
a ledger whose events do not give its own signed heads' roots is refused (`LedgerMismatch`).
The Merkle tree of the log (~70 bytes an event) stays in memory for the proofs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from app.audit import chain, heads, merkle
from app.audit.heads import TreeHead
from app.audit.ledger import checkpoints
from app.errors import Conflict
from app.store.engine import read_connection, write_transaction
from app.store.tables import AuditCheckpoint, AuditEvent


class LedgerMismatch(Conflict):
    """The ledger in the database contradicts itself or its signed heads: nothing exported."""


@dataclass
class Log:
    """The project's log as the export sees it: the anchor, the earlier heads, the tree."""

    anchor: TreeHead
    earlier: list[TreeHead]
    tree: merkle.MerkleTree


def prepare_log(engine: Engine, project_id: int, project: str, key: Ed25519PrivateKey) -> Log:
    with read_connection(engine) as conn:
        size = int(
            conn.execute(
                select(func.coalesce(func.max(AuditEvent.seq), 0)).where(
                    AuditEvent.project_id == project_id
                )
            ).scalar_one()
        )
        stored = checkpoints.stored_heads(conn, project_id, project)
        size = max([size, *(h.tree_size for h in stored)])
        hashes = _leaf_hashes(conn, project_id, size)
    tree = merkle.MerkleTree(merkle.leaf_hash(h) for h in hashes)
    for head in stored:
        if tree.root(head.tree_size) != head.root_hash:
            raise LedgerMismatch(
                f"the ledger's first {head.tree_size} events do not give the root of the head "
                f"signed at {chain.format_time(head.signed_at)}: the log was changed after it "
                "was signed; run `warden audit verify`"
            )
    newest = stored[-1] if stored else None
    if newest is not None and newest.tree_size == size:
        anchor = newest
    else:
        anchor = _sign_anchor(engine, project_id, project, key, size, tree.root(size))
    earlier = [h for h in stored if h.tree_size < anchor.tree_size]
    return Log(anchor, earlier, tree)


def _leaf_hashes(conn: Connection, project_id: int, size: int) -> list[bytes]:
    """The event hashes of seq 1..size, checked to be exactly those seqs."""
    result = conn.execution_options(yield_per=50_000).execute(
        select(AuditEvent.seq, AuditEvent.hash)
        .where(AuditEvent.project_id == project_id, AuditEvent.seq <= size)
        .order_by(AuditEvent.seq)
    )
    hashes: list[bytes] = []
    for seq, event_hash in result:
        if seq != len(hashes) + 1:
            raise LedgerMismatch(
                f"the ledger has no event {len(hashes) + 1} (it goes on at {seq}); "
                "run `warden audit verify` to see where it broke"
            )
        hashes.append(bytes(event_hash))
    if len(hashes) != size:
        raise LedgerMismatch(
            f"the ledger holds {len(hashes)} events but a signed head says {size}: "
            "events were cut off; run `warden audit verify`"
        )
    return hashes


def _sign_anchor(
    engine: Engine, project_id: int, project: str, key: Ed25519PrivateKey, size: int, root: bytes
) -> TreeHead:
    """A signed head of the whole log: the signer's (`checkpoints.sign_heads`), or, for a
    ledger written without the live ledger's head row, one signed here over (size, root)."""
    checkpoints.sign_heads(engine, key, project_id)
    with read_connection(engine) as conn:
        stored = checkpoints.stored_heads(conn, project_id, project)
    if stored and stored[-1].tree_size == size:
        return stored[-1]
    head = heads.sign_head(key, project, size, root, datetime.now(UTC))
    try:
        with write_transaction(engine) as conn:
            conn.execute(
                insert(AuditCheckpoint).values(
                    project_id=project_id, tree_size=size, root_hash=root,
                    signed_at=head.signed_at, key_id=head.key_id, signature=head.signature,
                )
            )  # fmt: skip
    except IntegrityError:  # signed meanwhile
        with read_connection(engine) as conn:
            stored = checkpoints.stored_heads(conn, project_id, project)
        head = next(h for h in stored if h.tree_size == size)
    return head
