"""What a verification finds: the exit status of each class of failure, the first problem
(file, line, seq), and the verdict `warden verify` prints.

`Stop` carries a problem out of any depth of the checks: the first failure decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from app.audit import chain
from app.audit.heads import TreeHead


class Failure(IntEnum):
    """The exit status of `warden verify` for each class of failure."""

    OK = 0
    USAGE = 2
    MANIFEST_SIGNATURE = 10
    FILE_DIGEST = 11
    RECORD_HASH = 12
    CHAIN = 13
    INCLUSION = 14
    HEAD_SIGNATURE = 15
    COUNTS = 16
    CONSISTENCY = 17


_LABEL = {
    Failure.MANIFEST_SIGNATURE: "manifest signature",
    Failure.FILE_DIGEST: "file digest",
    Failure.RECORD_HASH: "record hash",
    Failure.CHAIN: "chain",
    Failure.INCLUSION: "inclusion proof",
    Failure.HEAD_SIGNATURE: "head signature",
    Failure.COUNTS: "counts",
    Failure.CONSISTENCY: "consistency",
}


@dataclass(frozen=True)
class Problem:
    failure: Failure
    detail: str
    file: str | None = None
    line: int | None = None
    seq: int | None = None

    def message(self) -> str:
        """One line: `[13 chain] ledger/events-00001.jsonl line 42 (seq 42): ...`."""
        where = self.file or ""
        if self.line is not None:
            where += f" line {self.line}"
        if self.seq is not None:
            where += f" (seq {self.seq})"
        label = f"[{int(self.failure)} {_LABEL.get(self.failure, self.failure.name.lower())}]"
        return f"{label} {where.strip()}: {self.detail}" if where else f"{label} {self.detail}"


class Stop(Exception):
    """The first failure: the checks end here (see the module docstring)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


@dataclass
class Verdict:
    """What `verify_bundle` found; `problem` is None when the bundle verified."""

    problem: Problem | None
    key_id: str = ""
    project: str = ""
    mode: str = ""
    anchor: TreeHead | None = None
    pinned: TreeHead | None = None
    records: int = 0
    events: int = 0
    erased: int = 0
    uncovered: int = 0
    seconds: float = 0.0
    parts: int = 0  # of the ledger
    workers: int = 0  # processes that checked them (0: this one)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def exit_code(self) -> int:
        return int(self.problem.failure) if self.problem else 0

    def summary(self) -> str:
        """The one line `warden verify` prints."""
        if self.problem is not None:
            return f"FAILED {self.problem.message()}"
        size = self.anchor.tree_size if self.anchor else 0
        if self.pinned is not None:
            return (
                f"OK: signed by key {self.key_id}; consistent with your pinned head of "
                f"{self.pinned.tree_size} events (signed "
                f"{chain.format_time(self.pinned.signed_at)}): nothing recorded by then was "
                f"changed or removed, and the log has {size} events now"
            )
        return (
            f"OK (operator-signed only): signed by key {self.key_id}; no pinned head: this "
            f"proves the bundle is what the holder of {self.key_id} signed, not that the log "
            "was never rewritten (keep this bundle's head with --save-head and pass it with "
            "--pin next time)"
        )

    def details(self) -> str:
        anchor = self.anchor
        head = (
            f"anchor head {anchor.tree_size} events, root {anchor.root_hash.hex()}, signed "
            f"{chain.format_time(anchor.signed_at)}"
            if anchor
            else "no anchor head"
        )
        return (
            f"project {self.project}, {self.mode} scope: {self.records} request records, "
            f"{self.events} ledger events, {self.erased} erased, {self.uncovered} without a "
            f"ledger event; {head}; {self.seconds:.2f} s"
        )
