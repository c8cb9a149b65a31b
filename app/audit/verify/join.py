"""Joining the parts: each part's chain linked to the part before it, erasures matched with
the records they mark across parts, and the first problem of them all, in file order.

A part's check (`part_check`) sees one part only; it hands back the seqs and hashes at its
ends, and its erasure facts. Here, in the first process, the chain is followed across the
parts (full scope: from seq 1 and `chain.GENESIS`; partial scope: the runs of consecutive
seqs, which may go on from one part into the next), and the problems found anywhere are
ordered as a reader of the files would meet them (`position`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.audit import chain, layout
from app.audit.verify.framing import FileCheck
from app.audit.verify.units import Context, PartResult
from app.audit.verify.verdict import Failure, Problem

HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class LedgerResult:
    """What the ledger and the request records hold, joined from the parts, and the first
    problems found in them, in the heads and in the consistency proofs."""

    files: list[FileCheck]
    problem: Problem | None = None
    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    # Partial scope: (first, last, hash of the last, the events part it starts in) of each run.
    runs: list[tuple[int, int, bytes, str]] = field(default_factory=list)
    records: int = 0
    uncovered: int = 0
    erased_records: int = 0
    head_roots: dict[int, str] = field(default_factory=dict)
    root_at_pin: bytes | None = None
    consistency: Problem | None = None
    head_problem: Problem | None = None


def position(problem: Problem) -> tuple[int, int, int, int]:
    """Sort key, file order: events before records, then by part and line; on one line a bad
    hash before a bad link."""
    part = layout.part_number(problem.file or "")
    kind, number = part if part is not None else ("", 0)
    return (
        0 if kind == "events" else 1 if kind == "requests" else 2,
        number,
        problem.line or 0,
        0 if problem.failure == Failure.RECORD_HASH else 1,
    )


def join(ctx: Context, parts: list[PartResult], result: LedgerResult) -> None:
    """The first problem of the ledger and the request records, and what they hold."""
    for part in parts:
        result.files += part.files
        result.records += part.files[-1].lines
        result.events += part.events
        result.uncovered += part.uncovered
        result.erased_records += part.erased_records
    found = [part.problem for part in parts if part.problem is not None]
    linked = _link(ctx, parts, result)
    if linked is not None:
        found.append(linked)
    if not found:
        erasure = _erasure_problem(parts)
        if erasure is not None:
            found.append(erasure)
    result.problem = min(found, key=position) if found else None


def _link(ctx: Context, parts: list[PartResult], result: LedgerResult) -> Problem | None:
    """Each part's first event against the last event of the part before it: the chain
    across parts (full scope: from seq 1 and GENESIS), and the runs of a partial bundle."""
    full = ctx.mode == layout.FULL
    expected, last_hash = 1, chain.GENESIS  # full scope
    last_seq = 0
    for part in parts:
        name, first = part.events_name, part.first_seq
        if name is None:
            continue
        if first is None:
            if part.problem is not None and part.problem.file == name:
                return None  # its first line is bad: its own problem says so
            continue  # an empty part
        if full:
            if first != expected:
                what = "is missing" if first > expected else "comes again"
                return Problem(Failure.CHAIN, f"seq {expected} {what} (found seq {first})",
                               name, 1, first)  # fmt: skip
            if part.first_prev != last_hash.hex():
                return Problem(Failure.CHAIN, "the event does not link to the one before",
                               name, 1, first)  # fmt: skip
        elif first <= last_seq:
            return Problem(Failure.CHAIN, f"seq {first} comes after seq {last_seq}",
                           name, 1, first)  # fmt: skip
        elif last_seq and first == last_seq + 1:  # the run before goes on
            if part.first_prev != last_hash.hex():
                return Problem(Failure.CHAIN, "the event does not link to the one before",
                               name, 1, first)  # fmt: skip
        elif not HEX64.fullmatch(part.first_prev):  # a run starts: its link must be a hash
            return Problem(Failure.RECORD_HASH, "not an event line of the bundle's form",
                           name, 1, first)  # fmt: skip
        if part.last_seq is None:
            return None  # a problem inside it: its own problem says so
        if not full:
            runs = [(a, b, h, name) for a, b, h in part.runs]
            if last_seq and first == last_seq + 1:
                joined = result.runs.pop()
                runs[0] = (joined[0], runs[0][1], runs[0][2], joined[3])
            result.runs += runs
        expected, last_seq, last_hash = part.last_seq + 1, part.last_seq, part.last_hash
    return None


def _erasure_problem(parts: list[PartResult]) -> Problem | None:
    """The records marked erased are those whose subject an erasure event names: the first
    record, across the parts, that says otherwise."""
    erased = {pseudonym for part in parts for pseudonym in part.erased}
    found = []
    for part in parts:
        for line, seq, pseudonym in part.claims:
            if pseudonym not in erased:
                found.append(Problem(Failure.RECORD_HASH, "marked erased, but no erasure event "
                                     "in the ledger names its subject", part.requests, line,
                                     seq))  # fmt: skip
                break
    for pseudonym in erased:
        first = next((part for part in parts if pseudonym in part.subjects), None)
        if first is not None:
            line, seq = first.subjects[pseudonym]
            found.append(Problem(Failure.RECORD_HASH, "its subject was erased (an erasure event "
                                 "names it) but the record is not marked erased",
                                 first.requests, line, seq))  # fmt: skip
    return min(found, key=position) if found else None
