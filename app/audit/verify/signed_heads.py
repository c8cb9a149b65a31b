"""Signed heads and pins: the keys you trust, each head's signature, the earlier heads'
consistency proofs to the anchor, and the pin.

Every head the bundle names (the anchor, the heads in range, each line of
`ledger/heads.jsonl` with a head) must carry a trusted key's id and signature, and be of the
bundle's project (exit 15). Every heads line's consistency proof must show its tree a prefix
of the anchor's (exit 17). A pin — a head you kept from an earlier export — must be signed by
a key you trust, and its root must be the root of the first `tree_size` events of this log:
recomputed from the events (full scope) or taken from the heads line of that size (exit 17).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.audit import heads, layout, merkle
from app.audit.heads import TreeHead
from app.audit.verify.join import LedgerResult
from app.audit.verify.units import Context
from app.audit.verify.verdict import Failure, Problem, Stop


def raw_key(key: Ed25519PublicKey) -> bytes:
    """A key as its 32 raw bytes: what a worker process is handed."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def trusted_keys(raw_keys: Sequence[bytes]) -> dict[str, Ed25519PublicKey]:
    """The keys you trust, by key id, from their raw bytes."""
    keys = [Ed25519PublicKey.from_public_bytes(raw) for raw in raw_keys]
    return {heads.key_id(k): k for k in keys}


def head_problem(
    data: Any, keys: dict[str, Ed25519PublicKey], project: str, file: str, line: int | None
) -> Problem | None:
    """Why `data` is not a head of `project` signed by a trusted key, or None if it is."""
    try:
        head = heads.head_from_json(data)
    except (ValueError, TypeError, KeyError) as error:
        return Problem(Failure.HEAD_SIGNATURE, f"not a signed head: {error}", file, line)
    key = keys.get(head.key_id)
    if key is None:
        return Problem(Failure.HEAD_SIGNATURE, f"the head of {head.tree_size} events is signed "
                       f"by key {head.key_id}, not a key you trust", file, line)  # fmt: skip
    if not heads.verify_head(head, key):
        return Problem(Failure.HEAD_SIGNATURE, f"the signature of the head of {head.tree_size} "
                       "events does not verify", file, line)  # fmt: skip
    if head.project != project:
        return Problem(Failure.HEAD_SIGNATURE, f"the head is of project {head.project!r}",
                       file, line)  # fmt: skip
    return None


def check_heads(ctx: Context, result: LedgerResult, lines: Iterator[bytes]) -> int:
    """Each earlier head: signed by a trusted key (15), consistent with the anchor (17)."""
    keys = trusted_keys(ctx.keys)
    anchor = ctx.anchor
    count = 0
    for count, line in enumerate(lines, 1):
        try:
            entry = orjson.loads(line)
            size, root_hex = int(entry["tree_size"]), str(entry["root_hash"])
            path = [bytes.fromhex(p) for p in entry["consistency"]]
            root = bytes.fromhex(root_hex)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise Stop(Problem(Failure.CONSISTENCY, "not a head line", layout.HEADS,
                               count)) from None  # fmt: skip
        signed = entry.get("head")
        if signed is not None and result.head_problem is None:
            problem = head_problem(signed, keys, ctx.project, layout.HEADS, count)
            if problem is None:
                head = heads.head_from_json(signed)
                if head.tree_size != size or head.root_hash != root:
                    problem = Problem(Failure.HEAD_SIGNATURE, "the line's size or root is not "
                                      "its signed head's", layout.HEADS, count)  # fmt: skip
            result.head_problem = problem
        if result.consistency is None and not merkle.verify_consistency(
            size, anchor.tree_size, root, anchor.root_hash, path
        ):
            result.consistency = Problem(
                Failure.CONSISTENCY,
                f"the head of {size} events is not a prefix of the anchor head "
                f"({anchor.tree_size} events): the log was rewritten after it was signed",
                layout.HEADS, count,
            )  # fmt: skip
        result.head_roots[size] = root_hex
    return count


def pem_key_id(pem: bytes) -> str | None:
    try:
        return heads.key_id(heads.load_public_key(pem))
    except (ValueError, TypeError):
        return None


def check_pin_signature(pin: TreeHead, keys: dict[str, Ed25519PublicKey], project: str) -> None:
    key = keys.get(pin.key_id)
    if key is None or not heads.verify_head(pin, key):
        raise Stop(Problem(Failure.CONSISTENCY, "the pinned head is not signed by a key you "
                           "trust"))  # fmt: skip
    if pin.project != project:
        raise Stop(Problem(Failure.CONSISTENCY, f"the pinned head is of project {pin.project!r}, "
                           f"the bundle of {project!r}"))  # fmt: skip


def check_pin(ctx: Context, pin: TreeHead, ledger: LedgerResult) -> None:
    anchor = ctx.anchor
    size = pin.tree_size
    if size > anchor.tree_size:
        raise Stop(Problem(Failure.CONSISTENCY, f"your pinned head has {size} events, this "
                           f"bundle's log only {anchor.tree_size}: the bundle is older than your "
                           "pin, or the log was cut"))  # fmt: skip
    if size == anchor.tree_size:
        root = anchor.root_hash
    elif ledger.root_at_pin is not None:
        root = ledger.root_at_pin
    elif size == 0:
        root = merkle.EMPTY_ROOT
    else:
        root_hex = ledger.head_roots.get(size)
        if root_hex is None:
            raise Stop(Problem(Failure.CONSISTENCY, f"the bundle has no consistency proof from "
                               f"{size} events, your pinned head's size (export again with "
                               f"--prove-from {size})", layout.HEADS))  # fmt: skip
        root = bytes.fromhex(root_hex)
    if root != pin.root_hash:
        raise Stop(Problem(Failure.CONSISTENCY, f"the log was rewritten: its first {size} events "
                           f"give root {root.hex()[:16]}…, your pinned head says "
                           f"{pin.root_hash.hex()[:16]}…"))  # fmt: skip
