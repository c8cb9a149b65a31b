"""The units of work of a verification, picklable for worker processes: what every check
needs (`Context`), a part of the ledger with its part of the request records (`Part`), and
the small summary a part's check hands back (`PartResult`) for the parts to be joined.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.audit.heads import TreeHead
from app.audit.verify.framing import FileCheck
from app.audit.verify.verdict import Problem


@dataclass(frozen=True)
class Context:
    """What this process's checks need, picklable for worker processes."""

    source: str | bytes
    project: str
    mode: str
    files: dict[str, dict[str, Any]]
    anchor: TreeHead
    keys: tuple[bytes, ...]
    pin_size: int | None


def listed_bytes(ctx: Context, names: Iterable[str]) -> int:
    """The size the manifest gives for these files (what is not a size counts as nothing)."""
    sizes = (ctx.files[name].get("bytes") for name in names)
    return sum(size for size in sizes if type(size) is int and size > 0)


@dataclass(frozen=True)
class Part:
    """A unit of work: events part `number` and its requests part, or (`events` None) a
    requests part of records without a ledger event. Picklable, for worker processes."""

    source: str | bytes
    number: int
    events: str | None
    requests: str
    project: str
    full: bool
    expected: dict[str, dict[str, Any]]  # the manifest's entries of the two files
    pin_size: int | None  # full scope: the part holding this seq returns its hashes

    def names(self) -> Iterator[str]:
        if self.events is not None:
            yield self.events
        yield self.requests


@dataclass
class PartResult:
    """What a part holds and how it ends, for this process to join the parts together."""

    number: int
    requests: str
    events_name: str | None = None
    files: list[FileCheck] = field(default_factory=list)
    problem: Problem | None = None  # the part's first, events before records
    events: int = 0
    first_seq: int | None = None  # of its first event line, once that line checked out
    first_prev: str = ""  # that line's prev_hash
    last_seq: int | None = None  # of its last event, if every line checked out
    last_hash: bytes = b""
    # Full scope: the part's leaves as aligned perfect subtrees, (first leaf, height, root).
    subtrees: list[tuple[int, int, bytes]] = field(default_factory=list)
    hashes: bytes = b""  # full scope, the part holding the pinned size: its event hashes
    # Partial scope: each run of consecutive seqs, (first, last, hash of the last).
    runs: list[tuple[int, int, bytes]] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)  # pseudonyms erasure events name
    claims: list[tuple[int, int, str | None]] = field(default_factory=list)  # marked erased
    subjects: dict[str, tuple[int, int]] = field(default_factory=dict)  # first of each
    uncovered: int = 0
    erased_records: int = 0
