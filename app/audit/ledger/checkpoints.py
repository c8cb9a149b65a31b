"""Signed tree heads of the live ledger, the signer thread, and proofs against the heads.

A head commits to (project, tree size, Merkle root, time, key id) with an Ed25519
signature (docs/audit.md, section 5). The service signs one for each project whose ledger
grew, every `WARDEN_AUDIT_CHECKPOINT_INTERVAL` seconds, in one process of the deployment (the
leader of the `audit-checkpoints` job, app/daemons.py); `warden audit checkpoint` and
`POST /v1/audit/heads` sign now. The root comes from the Merkle accumulator state kept in
`audit_heads`, so signing never rereads the log.

The signing key is `WARDEN_AUDIT_SIGNING_KEY` (a PKCS#8 PEM file) or
`<data_dir>/audit-signing.key`, generated on first use. Several machines should share one
key file (like the server secret); otherwise each signs with its own and an auditor needs
every public key.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, Table, func, select
from sqlalchemy.exc import SQLAlchemyError

from app.audit import heads, merkle
from app.audit.heads import TreeHead
from app.audit.ledger import HEADS, accumulator, read_head, record_policy_set
from app.audit.ledger.read_models import (
    ConsistencyProof,
    InclusionProofOut,
    LedgerState,
    SignedHead,
)
from app.config import Settings
from app.daemons import PeriodicWorker
from app.errors import BadRequest, Conflict, NotFound
from app.metrics import Metrics
from app.store import leadership
from app.store.dialect import insert_on_conflict
from app.store.engine import read_connection, write_transaction
from app.store.tables import AuditCheckpoint, AuditEvent, Project
from policies import PolicySet

log = logging.getLogger("warden.audit")
CHECKPOINTS: Table = AuditCheckpoint.__table__  # type: ignore[assignment]
KEY_FILE = "audit-signing.key"


def signing_key_path(settings: Settings) -> Path:
    return settings.audit_signing_key or settings.data_dir / KEY_FILE


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The key that signs tree heads: the configured file, or the data folder's own, made on
    first use (mode 0600). Two processes starting at once agree on one key."""
    path = signing_key_path(settings)
    if settings.audit_signing_key is None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            heads.save_private_key(heads.generate_key(), path)
    try:
        return heads.load_private_key(path)
    except FileNotFoundError:
        raise BadRequest(
            f"WARDEN_AUDIT_SIGNING_KEY names {path}, which does not exist: point it at an "
            "Ed25519 private key (PKCS#8 PEM), or unset it to use the data folder's own"
        ) from None
    except ValueError as exc:
        # an empty file: another process is writing the key right now
        if path.stat().st_size == 0:
            threading.Event().wait(0.2)
            return heads.load_private_key(path)
        raise BadRequest(f"{path}: {exc}") from None


def head_from_row(project: str, row: Any) -> TreeHead:
    return TreeHead(
        project=project,
        tree_size=int(row.tree_size),
        root_hash=bytes(row.root_hash),
        signed_at=row.signed_at,
        key_id=row.key_id,
        signature=bytes(row.signature),
    )


def _checkpoint_query() -> Any:
    return select(
        CHECKPOINTS.c.tree_size, CHECKPOINTS.c.root_hash, CHECKPOINTS.c.signed_at,
        CHECKPOINTS.c.key_id, CHECKPOINTS.c.signature,
    )  # fmt: skip


def stored_heads(conn: Connection, project_id: int, project: str) -> list[TreeHead]:
    """Every signed head of a project, by tree size then time."""
    query = (
        _checkpoint_query()
        .where(CHECKPOINTS.c.project_id == project_id)
        .order_by(CHECKPOINTS.c.tree_size, CHECKPOINTS.c.id)
    )
    return [head_from_row(project, r) for r in conn.execute(query)]


def sign_heads(
    engine: Engine, key: Ed25519PrivateKey, project_id: int | None = None
) -> list[TreeHead]:
    """Sign a head for each project (or one) whose ledger grew since its newest head.

    Returns the heads signed now; a project whose ledger did not grow gets none.
    """
    latest = (
        select(CHECKPOINTS.c.project_id, func.max(CHECKPOINTS.c.tree_size).label("size"))
        .group_by(CHECKPOINTS.c.project_id)
        .subquery()
    )
    query = (
        select(HEADS.c.project_id, HEADS.c.seq, HEADS.c.merkle_state, Project.name, latest.c.size)
        .join(Project, Project.id == HEADS.c.project_id)
        .outerjoin(latest, latest.c.project_id == HEADS.c.project_id)
    )
    if project_id is not None:
        query = query.where(HEADS.c.project_id == project_id)
    with read_connection(engine) as conn:
        due = [r for r in conn.execute(query) if r.size is None or int(r.seq) > int(r.size)]
    signed = []
    for row in due:
        acc = accumulator(row.merkle_state)
        if acc.size != int(row.seq):
            log.error("audit head of project %s is out of step with its Merkle state", row.name)
            continue
        head = heads.sign_head(key, row.name, acc.size, acc.root(), datetime.now(UTC))
        if _store(engine, int(row.project_id), head):
            signed.append(head)
    return signed


def _store(engine: Engine, project_id: int, head: TreeHead) -> bool:
    with write_transaction(engine) as conn:
        done = conn.execute(
            insert_on_conflict(conn, CHECKPOINTS, ["project_id", "tree_size"]).values(
                project_id=project_id, tree_size=head.tree_size, root_hash=head.root_hash,
                signed_at=head.signed_at, key_id=head.key_id, signature=head.signature,
            )
        ).rowcount  # fmt: skip
    return bool(done)


def sign_now(engine: Engine, key: Ed25519PrivateKey, project_id: int) -> TreeHead:
    """Sign the project's head now if its ledger grew; the newest head either way."""
    sign_heads(engine, key, project_id)
    head = latest_head(engine, project_id)
    if head is None:
        raise NotFound("this project's ledger has no events yet: nothing to sign")
    return head


def latest_head(engine: Engine, project_id: int) -> TreeHead | None:
    with read_connection(engine) as conn:
        name = _name(conn, project_id)
        row = _newest_row(conn, project_id)
    return head_from_row(name, row) if row is not None else None


def _newest_row(conn: Connection, project_id: int) -> Any:
    """The row of the project's largest signed head (the last signed, among equals)."""
    return conn.execute(
        _checkpoint_query()
        .where(CHECKPOINTS.c.project_id == project_id)
        .order_by(CHECKPOINTS.c.tree_size.desc(), CHECKPOINTS.c.id.desc())
        .limit(1)
    ).one_or_none()


def list_heads(
    engine: Engine, project_id: int, limit: int = 100, below: int | None = None
) -> list[TreeHead]:
    """Signed heads, largest first; `below` pages on (heads of a smaller tree size)."""
    if not 1 <= limit <= 1000:
        raise BadRequest("limit must be between 1 and 1000")
    query = (
        _checkpoint_query()
        .where(CHECKPOINTS.c.project_id == project_id)
        .order_by(CHECKPOINTS.c.tree_size.desc(), CHECKPOINTS.c.id.desc())
        .limit(limit)
    )
    if below is not None:
        query = query.where(CHECKPOINTS.c.tree_size < below)
    with read_connection(engine) as conn:
        name = _name(conn, project_id)
        return [head_from_row(name, r) for r in conn.execute(query)]


def _name(conn: Connection, project_id: int) -> str:
    name = conn.execute(select(Project.name).where(Project.id == project_id)).scalar_one_or_none()
    if name is None:
        raise NotFound(f"no project with id {project_id}")
    return str(name)


def _head_of_size(conn: Connection, project_id: int, project: str, size: int) -> TreeHead:
    row = conn.execute(
        _checkpoint_query()
        .where(CHECKPOINTS.c.project_id == project_id, CHECKPOINTS.c.tree_size == size)
        .order_by(CHECKPOINTS.c.id.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"no signed head of tree size {size}: proofs are given against signed heads "
            "(GET /v1/audit/heads lists them)"
        )
    return head_from_row(project, row)


def _tree(conn: Connection, project_id: int, size: int) -> merkle.MerkleTree:
    hashes = conn.execute(
        select(AuditEvent.hash)
        .where(AuditEvent.project_id == project_id, AuditEvent.seq <= size)
        .order_by(AuditEvent.seq)
    ).scalars()
    tree = merkle.MerkleTree(merkle.leaf_hash(bytes(h)) for h in hashes)
    if tree.size != size:
        raise Conflict(
            f"the ledger holds {tree.size} of the {size} events a signed head covers: it was "
            "cut; run `warden audit verify`"
        )
    return tree


def _check_root(tree: merkle.MerkleTree, head: TreeHead) -> None:
    if tree.root(head.tree_size) != head.root_hash:
        raise Conflict(
            f"the stored events do not give the root of the head of size {head.tree_size}: "
            "the ledger was altered; run `warden audit verify`"
        )


@dataclass(frozen=True)
class InclusionProof:
    seq: int
    event_hash: bytes
    head: TreeHead
    path: list[bytes]

    def out(self) -> InclusionProofOut:
        """The proof as the API serves it: hex hashes, the head as HEAD.json."""
        return InclusionProofOut(
            seq=self.seq,
            leaf_index=self.seq - 1,
            event_hash=self.event_hash.hex(),
            leaf_hash=merkle.leaf_hash(self.event_hash).hex(),
            tree_size=self.head.tree_size,
            proof=[p.hex() for p in self.path],
            head=SignedHead.of(self.head),
        )


def inclusion(
    engine: Engine, project_id: int, seq: int, tree_size: int | None = None
) -> InclusionProof:
    """The audit path of event `seq` against a signed head (the newest by default)."""
    with read_connection(engine) as conn:
        name = _name(conn, project_id)
        head = _signed(conn, project_id, name, tree_size)
        if not 1 <= seq <= head.tree_size:
            raise BadRequest(
                f"seq {seq} is not in the tree of size {head.tree_size}: ask against a later "
                "signed head (POST /v1/audit/heads signs one now)"
            )
        tree = _tree(conn, project_id, head.tree_size)
        _check_root(tree, head)
        event_hash = conn.execute(
            select(AuditEvent.hash).where(
                AuditEvent.project_id == project_id, AuditEvent.seq == seq
            )
        ).scalar_one()
    path = tree.inclusion_proof(seq - 1, head.tree_size)
    return InclusionProof(seq, bytes(event_hash), head, path)


def _signed(conn: Connection, project_id: int, name: str, size: int | None) -> TreeHead:
    if size is not None:
        return _head_of_size(conn, project_id, name, size)
    row = _newest_row(conn, project_id)
    if row is None:
        raise NotFound("no signed head yet: POST /v1/audit/heads signs one now")
    return head_from_row(name, row)


def consistency(
    engine: Engine, project_id: int, first: int, second: int | None = None
) -> ConsistencyProof:
    """The proof that the tree of size `first` is a prefix of the signed head of `second`
    (the newest head by default). `first` is the size of the head the auditor pinned."""
    with read_connection(engine) as conn:
        name = _name(conn, project_id)
        new = _signed(conn, project_id, name, second)
        if not 0 <= first <= new.tree_size:
            raise BadRequest(
                f"first must be between 0 and the second head's size {new.tree_size}"
            )
        tree = _tree(conn, project_id, new.tree_size)
        _check_root(tree, new)
        old = conn.execute(
            _checkpoint_query()
            .where(CHECKPOINTS.c.project_id == project_id, CHECKPOINTS.c.tree_size == first)
            .limit(1)
        ).one_or_none()
    return ConsistencyProof(
        first=first,
        second=new.tree_size,
        first_root=tree.root(first).hex(),
        proof=[p.hex() for p in tree.consistency_proof(first, new.tree_size)],
        first_head=SignedHead.of(head_from_row(name, old)) if old is not None else None,
        second_head=SignedHead.of(new),
    )


def head_state(engine: Engine, project_id: int) -> LedgerState:
    """Where the project's ledger stands now (unsigned): size and root."""
    with read_connection(engine) as conn:
        head = read_head(conn, project_id)
    if head is None:
        return LedgerState(tree_size=0, root_hash=merkle.EMPTY_ROOT.hex())
    return LedgerState(tree_size=head.seq, root_hash=head.accumulator().root().hex())


def record_at_start(engine: Engine, policy_set: PolicySet) -> None:
    """At service start: record the policy set in force in the audit ledger. The signer
    records it again each round, for projects made since."""
    try:
        record_policy_set(engine, policy_set)
    except SQLAlchemyError as exc:
        log.warning("could not record the policy set in the audit ledger yet: %s", exc)


class Checkpointer(PeriodicWorker):
    """The signer: every `interval` seconds, a head for each project whose ledger grew
    (and the policy set recorded for projects made since the last round)."""

    def __init__(
        self,
        engine: Engine,
        key: Ed25519PrivateKey,
        interval: float,
        policy_set: PolicySet | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        name = "audit-checkpoints"
        super().__init__(name, interval, leadership.for_engine(engine, name), metrics)
        self.engine = engine
        self.key = key
        self.policy_set = policy_set

    def tick(self) -> None:
        if self.policy_set is not None:
            record_policy_set(self.engine, self.policy_set)
        for head in sign_heads(self.engine, self.key):
            log.info("signed audit head of %s at size %d", head.project, head.tree_size)
