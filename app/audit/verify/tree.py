"""The Merkle tree of the bundle's ledger (RFC 6962), from the parts' subtrees; and the
check of the tree against the anchor head: its root (full scope), the inclusion proofs of the
runs of events (partial scope), and the root at a pinned size.

Each part's check hashes its events' leaves into the aligned perfect subtrees they fill
(`subtrees`); a subtree of 2^h leaves starting at a multiple of 2^h is a node of the tree of
any size that holds it whole, so the parts' subtrees, in order, give the root (`root_from`)
without any process holding every leaf.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

from app.audit import layout, merkle
from app.audit.verify.framing import read_member
from app.audit.verify.join import HEX64, LedgerResult
from app.audit.verify.units import Context, PartResult
from app.audit.verify.verdict import Failure, Problem, Stop

_sha256 = hashlib.sha256


def subtrees(first: int, hashes: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
    """Leaves [first, first + len(hashes)) of the log's tree as the aligned perfect subtrees
    they fill, largest first where alignment allows: (first leaf, height, root).

    A subtree of 2^h leaves starting at a multiple of 2^h is a node of RFC 6962's tree of any
    size that holds it whole, so the parts' subtrees, in order, give the root (`root_from`).
    """
    sha256, leaf = _sha256, b"\x00"  # `merkle.leaf_hash`, without a call per leaf
    leaves = [sha256(leaf + h).digest() for h in hashes]
    found = []
    done = 0
    while done < len(leaves):
        at = first + done
        height = (len(leaves) - done).bit_length() - 1
        if at:
            height = min(height, (at & -at).bit_length() - 1)
        found.append((at, height, merkle.root(leaves[done : done + (1 << height)])))
        done += 1 << height
    return found


def root_from(filled: Iterable[tuple[int, int, bytes]]) -> bytes:
    """The root of the tree over leaves [0, n) given as consecutive aligned subtrees."""
    stack: list[tuple[int, bytes]] = []  # the compact range so far: heights decreasing
    size = 0
    for at, height, root in filled:
        if at != size:
            raise ValueError(f"subtrees from leaf {size} expected, not {at}")
        size += 1 << height
        while stack and stack[-1][0] == height:
            root = merkle.node_hash(stack.pop()[1], root)
            height += 1
        stack.append((height, root))
    return merkle.MerkleAccumulator.restore(size, [root for _, root in stack]).root()


def tree_problem(
    ctx: Context, result: LedgerResult, parts: list[PartResult], bundle: zipfile.ZipFile
) -> Problem | None:
    """Full scope: the events are the whole log the anchor signed. Partial: the proofs."""
    anchor = ctx.anchor
    if ctx.mode == layout.FULL:
        count = result.events
        result.first_seq, result.last_seq = (1, count) if count else (None, None)
        if count != anchor.tree_size:
            end = next((p for p in reversed(parts) if p.events), parts[0])
            return Problem(
                Failure.CHAIN,
                f"the ledger has {count} events but the signed head covers {anchor.tree_size}: "
                + ("events were cut off" if count < anchor.tree_size else "events were added"),
                end.events_name, end.events or None,
                count + 1 if count < anchor.tree_size else None,
            )  # fmt: skip
        filled = [subtree for part in parts for subtree in part.subtrees]
        if root_from(filled) != anchor.root_hash:
            return Problem(
                Failure.INCLUSION,
                "the events do not give the root of the signed head: the log is not the one "
                "that was signed",
                layout.events_part(1) if len(parts) == 1 else "ledger/events-*.jsonl",
            )
        if ctx.pin_size and 0 < ctx.pin_size < count:
            result.root_at_pin = root_at(ctx.pin_size, parts)
        return None
    if result.runs:
        result.first_seq, result.last_seq = result.runs[0][0], result.runs[-1][1]
    if layout.PROOFS not in ctx.files:
        return Problem(Failure.INCLUSION, "a partial bundle needs ledger/proofs.jsonl")
    proofs: dict[tuple[int, int], Any] = {}
    problem: list[Problem] = []

    def read_proofs(lines: Iterator[bytes]) -> int:
        count = 0
        for count, line in enumerate(lines, 1):
            try:
                proof = orjson.loads(line)
                proofs[(int(proof["first_seq"]), int(proof["last_seq"]))] = (count, proof)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise Stop(Problem(Failure.INCLUSION, "not a proof line", layout.PROOFS,
                                   count)) from None  # fmt: skip
        return count

    proofs_file = read_member(bundle, layout.PROOFS, ctx.files[layout.PROOFS], read_proofs)
    result.files.append(proofs_file)
    if proofs_file.problem is not None:
        return proofs_file.problem
    for first, last, last_hash, name in result.runs:
        found = proofs.pop((first, last), None)
        if found is None:
            problem.append(Problem(Failure.INCLUSION, f"no inclusion proof covers seq {first}-"
                                   f"{last}", name, None, first))  # fmt: skip
            break
        number, proof = found
        path = proof.get("path")
        ok = (
            proof.get("tree_size") == anchor.tree_size
            and proof.get("leaf_index") == last - 1
            and isinstance(path, list)
            and all(isinstance(p, str) and HEX64.fullmatch(p) for p in path)
            and merkle.verify_inclusion(
                merkle.leaf_hash(last_hash), last - 1, anchor.tree_size,
                [bytes.fromhex(p) for p in path], anchor.root_hash,
            )
        )  # fmt: skip
        if not ok:
            problem.append(Problem(Failure.INCLUSION, f"the proof of seq {first}-{last} does "
                                   "not lead to the signed root", layout.PROOFS, number,
                                   last))  # fmt: skip
            break
    if not problem and proofs:
        number, proof = min(proofs.values(), key=lambda item: item[0])
        problem.append(Problem(Failure.INCLUSION, "a proof for events the bundle does not hold",
                               layout.PROOFS, number, proof.get("last_seq")))  # fmt: skip
    return problem[0] if problem else None


def root_at(size: int, parts: list[PartResult]) -> bytes:
    """Full scope: the root of the first `size` events, for a pin: the subtrees below `size`,
    and the leaves of the one it cuts (from the part that returned its hashes)."""
    below = [s for part in parts for s in part.subtrees if s[0] + (1 << s[1]) <= size]
    done = below[-1][0] + (1 << below[-1][1]) if below else 0
    if done < size:
        holder = next(p for p in parts if p.hashes)
        offset = (holder.first_seq or 1) - 1
        hashes = holder.hashes[(done - offset) * 32 : (size - offset) * 32]
        below += subtrees(done, [hashes[i : i + 32] for i in range(0, len(hashes), 32)])
    return root_from(below)
