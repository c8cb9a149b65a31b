"""Verifying the live ledger: every hash and link, every signed head, and a pinned head.

`verify_records` is the whole check over rows in hand (events in seq order, the signed heads,
the `audit_heads` row); `verify_project` reads them from the database, a chunk of events at a
time, and hands them to it. `warden audit verify` runs it for each project; `verify_ledger`
runs it for one, against one key (the dashboard's audit page, with the service's own key).

What is checked, in order, stopping at the first failure:

1. the chain (docs/audit.md, section 2): each event's seq is the one due, its `prev_hash` is
   the hash before it, its `hash` is SHA-256(prev_hash || canonical event);
2. each signed head: its key id is a trusted key's, its signature verifies, the log has at
   least `tree_size` events and its first `tree_size` give the signed root;
3. the `audit_heads` row agrees with the log (size, last hash, Merkle root);
4. with a pinned head (an auditor's HEAD.json): it is genuine, the log extends it, and a
   consistency proof from it to the newest signed head verifies.

Each failure class has its own exit code (`Failure`), listed in docs/audit.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, func, select

from app.audit import chain, heads, merkle
from app.audit.chain import ChainFailure
from app.audit.heads import TreeHead
from app.audit.ledger import EMPTY_STATE, EVENTS, Head, accumulator, iter_events, read_head
from app.audit.ledger.checkpoints import stored_heads
from app.errors import NotFound
from app.store.dialect import consistent_snapshot
from app.store.tables import Project

Progress = Callable[[int], None]


class Failure(IntEnum):
    """What `warden audit verify` found; the value is its exit status."""

    OK = 0
    HASH_MISMATCH = 10  # an event's bytes changed: its stored hash is not its hash
    BROKEN_LINK = 11  # an event does not link to the hash of the event before it
    GAP = 12  # an event is missing from the middle of the chain
    REORDERED = 13  # an event repeats, or comes before its place
    MALFORMED = 14  # a stored event has no canonical form
    HEAD_ROW = 15  # the audit_heads row is out of step with the log
    BAD_SIGNATURE = 20  # a signed head's signature does not verify (forged or altered)
    UNKNOWN_KEY = 21  # a head was signed by a key that is not trusted
    TRUNCATED = 22  # the log has fewer events than a signed head covers
    ROOT_MISMATCH = 23  # the log's first tree_size events do not give a head's root
    PIN = 24  # the pinned head is not genuine, or the log does not extend it


_CHAIN = {
    ChainFailure.HASH_MISMATCH: Failure.HASH_MISMATCH,
    ChainFailure.BROKEN_LINK: Failure.BROKEN_LINK,
    ChainFailure.GAP: Failure.GAP,
    ChainFailure.REORDERED: Failure.REORDERED,
    ChainFailure.MALFORMED: Failure.MALFORMED,
}


@dataclass(frozen=True)
class EventRow:
    """An `audit_events` row as the verifier reads it."""

    seq: Any
    kind: Any
    created_at: Any
    payload: Any
    prev_hash: Any
    hash: Any


@dataclass
class Report:
    project: str
    failure: Failure = Failure.OK
    message: str = ""
    seq: int | None = None  # the first event the log cannot vouch for, when known
    events: int = 0  # events verified
    heads: int = 0  # signed heads verified
    pinned: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failure is Failure.OK

    def fail(self, failure: Failure, message: str, seq: int | None = None) -> Report:
        self.failure, self.message, self.seq = failure, message, seq
        return self


def trusted_keys(keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    return {heads.key_id(k): k for k in keys}


def verify_records(
    project: str,
    events: Iterable[Any],
    signed: Sequence[TreeHead],
    keys: Mapping[str, Ed25519PublicKey],
    head_row: Head | None = None,
    pin: TreeHead | None = None,
    progress: Progress | None = None,
) -> Report:
    """Verify a project's ledger from its rows: `events` in seq order (objects with seq,
    kind, created_at, payload, prev_hash and hash), its signed heads, the `audit_heads` row.
    """
    report = Report(project, pinned=pin is not None)
    sizes = {h.tree_size for h in signed} | ({pin.tree_size} if pin else set())
    roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT}
    acc = merkle.MerkleAccumulator()
    leaves: list[bytes] | None = [] if pin is not None else None

    def records() -> Iterator[chain.Record]:
        for count, row in enumerate(events, 1):
            try:
                payload = row.payload
                if isinstance(payload, str | bytes):
                    payload = orjson.loads(payload)
                event = {
                    "seq": row.seq, "project": project, "kind": row.kind,
                    "created_at": row.created_at, "payload": payload,
                }  # fmt: skip
                stored = bytes(row.hash)
                record = (event, bytes(row.prev_hash), stored)
            except (AttributeError, TypeError, ValueError):
                yield (None, b"", b"")  # type: ignore[misc]  # MALFORMED at this position
                continue
            if len(stored) == merkle.HASH_SIZE:
                leaf = merkle.leaf_hash(stored)
                acc.append(leaf)
                if leaves is not None:
                    leaves.append(leaf)
                if acc.size in sizes:
                    roots[acc.size] = acc.root()
            if progress is not None and count % 1000 == 0:
                progress(count)
            yield record

    try:
        result = chain.verify_chain(records())
    except (ValueError, TypeError, OverflowError) as exc:  # a column the driver cannot read
        return report.fail(
            Failure.MALFORMED, f"event after seq {acc.size}: a stored value cannot be read: {exc}",
            acc.size + 1,
        )
    report.events = result.verified
    if progress is not None:
        progress(result.verified)
    if not result.ok:
        assert result.failure is not None
        return report.fail(
            _CHAIN[result.failure],
            f"event seq {result.seq} (record {result.index}): {result.detail}",
            result.seq,
        )
    size = result.verified

    for head in sorted(signed, key=lambda h: (h.tree_size, h.signed_at)):
        problem = _check_head(head, keys, size, roots)
        if problem is not None:
            return report.fail(*problem)
        report.heads += 1

    if head_row is not None:
        row_root = _row_root(head_row)
        if head_row.seq != size or head_row.last_hash != result.last_hash or row_root != (
            acc.root() if size else merkle.EMPTY_ROOT
        ):
            return report.fail(
                Failure.HEAD_ROW,
                f"the audit_heads row says seq {head_row.seq}, but the log has {size} events "
                "(or another last hash or root): it was edited, and the next append would "
                "break the chain",
            )

    if pin is not None:
        assert leaves is not None
        problem = _check_pin(pin, keys, signed, size, roots, leaves)
        if problem is not None:
            return report.fail(*problem)
        report.notes.append(f"extends the pinned head of size {pin.tree_size}")
    return report


def _row_root(head_row: Head) -> bytes | None:
    try:
        return accumulator(head_row.merkle_state).root()
    except (KeyError, TypeError, ValueError):
        return None


def _check_signature(
    head: TreeHead, keys: Mapping[str, Ed25519PublicKey]
) -> tuple[Failure, str] | None:
    key = keys.get(head.key_id)
    if key is None:
        return Failure.UNKNOWN_KEY, (
            f"the head of size {head.tree_size} signed at {chain.format_time(head.signed_at)} "
            f"names key {head.key_id}, which is not a trusted key: pass its public key with "
            "--public-key if it is yours"
        )
    if not heads.verify_head(head, key):
        return Failure.BAD_SIGNATURE, (
            f"the signature of the head of size {head.tree_size} signed at "
            f"{chain.format_time(head.signed_at)} does not verify: the head was forged or "
            "altered"
        )
    return None


def _check_head(
    head: TreeHead, keys: Mapping[str, Ed25519PublicKey], size: int, roots: Mapping[int, bytes]
) -> tuple[Failure, str, int | None] | None:
    problem = _check_signature(head, keys)
    if problem is not None:
        return (*problem, None)
    if head.tree_size > size:
        return (
            Failure.TRUNCATED,
            f"the log has {size} events, but a head signed at "
            f"{chain.format_time(head.signed_at)} covers {head.tree_size}: events "
            f"{size + 1} to {head.tree_size} were removed",
            size + 1,
        )
    if roots.get(head.tree_size) != head.root_hash:
        return (
            Failure.ROOT_MISMATCH,
            f"the first {head.tree_size} events do not give the root of the head signed at "
            f"{chain.format_time(head.signed_at)}: the log was rewritten up to seq "
            f"{head.tree_size}",
            None,
        )
    return None


def _check_pin(
    pin: TreeHead,
    keys: Mapping[str, Ed25519PublicKey],
    signed: Sequence[TreeHead],
    size: int,
    roots: Mapping[int, bytes],
    leaves: list[bytes],
) -> tuple[Failure, str, int | None] | None:
    problem = _check_signature(pin, keys)
    if problem is not None:
        return Failure.PIN, f"pinned head: {problem[1]}", None
    if pin.tree_size > size:
        return (
            Failure.TRUNCATED,
            f"the log has {size} events, fewer than the {pin.tree_size} of the pinned head: "
            f"events {size + 1} to {pin.tree_size} were removed",
            size + 1,
        )
    if roots.get(pin.tree_size) != pin.root_hash:
        return (
            Failure.PIN,
            f"the log does not extend the pinned head: its first {pin.tree_size} events give "
            "another root (the log was rewritten)",
            None,
        )
    newest = max(signed, key=lambda h: (h.tree_size, h.signed_at), default=None)
    if newest is None or newest.tree_size < pin.tree_size:
        return (
            Failure.PIN,
            f"no signed head as large as the pinned one ({pin.tree_size}): heads were removed",
            None,
        )
    tree = merkle.MerkleTree(leaves[: newest.tree_size])
    proof = tree.consistency_proof(pin.tree_size, newest.tree_size)
    if not merkle.verify_consistency(
        pin.tree_size, newest.tree_size, pin.root_hash, newest.root_hash, proof
    ):
        return (
            Failure.PIN,
            f"no consistency proof from the pinned head ({pin.tree_size}) to the newest "
            f"signed head ({newest.tree_size})",
            None,
        )
    return None


def verify_project(
    conn: Connection,
    project: str,
    keys: Mapping[str, Ed25519PublicKey],
    pin: TreeHead | None = None,
    progress: Progress | None = None,
) -> Report:
    """Verify one project's live ledger through `conn` (run it in one transaction: on
    PostgreSQL at REPEATABLE READ, so events appended meanwhile do not mix in)."""
    project_id = conn.execute(
        select(Project.id).where(Project.name == project)
    ).scalar_one_or_none()
    if project_id is None:
        raise NotFound(f"no project named {project!r}")
    if pin is not None and pin.project != project:
        return Report(project, pinned=True).fail(
            Failure.PIN, f"the pinned head is of project {pin.project!r}, not {project!r}"
        )
    head_row = read_head(conn, int(project_id)) or Head(
        int(project_id), project, 0, chain.GENESIS, dict(EMPTY_STATE), None
    )
    signed = stored_heads(conn, int(project_id), project)
    events = iter_events(conn, int(project_id), raw_payload=True)
    return verify_records(project, events, signed, keys, head_row, pin, progress)


def verify_ledger(engine: Engine, project: str, public_key: Ed25519PublicKey) -> Report:
    """`verify_project` in a transaction of its own, on one snapshot, trusting `public_key`."""
    with engine.connect() as conn:
        return verify_project(consistent_snapshot(conn), project, trusted_keys([public_key]))


def event_count(conn: Connection, project: str) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(EVENTS)
            .join(Project, Project.id == EVENTS.c.project_id)
            .where(Project.name == project)
        ).scalar_one()
    )
