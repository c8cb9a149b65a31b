"""Offline verification of an export bundle: no database, no network, only the bundle and keys.

`verify_bundle(bundle, [public_key], pin=None)` checks, in this order:

1. the manifest's Ed25519 signature under a key you trust (`manifest.sig`; the bundle's own
   `public-key.pem` is never used to decide) .......................... exit 10
2. every signed head the bundle names: key id and signature ............. exit 15
3. the zip holds exactly the manifest's files, each with its SHA-256 ..... exit 11
4. each ledger event: its line carries the canonical bytes of an event of this project
   (RFC 8785, re-encoded and compared byte for byte), and SHA-256(prev_hash || those bytes)
   is its hash; each request record ends with its event's line (byte for byte) and agrees
   with it (trace, fingerprint, models, outcome, ...); the `erased` markers are those the
   ledger's `erasure` events imply ...................................... exit 12
5. the chain: full scope — seq 1, 2, 3 ... each linked to the one before, up to the anchor
   head's size; partial scope — increasing seqs, each run of consecutive ones linked .. 13
6. the Merkle tree: full scope — the events give the anchor's root; partial scope — the last
   event of each run has an RFC 6962 inclusion proof against the anchor ... exit 14
7. the manifest's counts: records per file (lines, Parquet rows), events, erased ... exit 16
8. consistency: every earlier head's proof to the anchor; with `pin` (a head you kept from
   an earlier export), that the log you saw then is a prefix of this one ... exit 17

The first failure decides the exit code; its message names the file, line and seq. A file
whose digest differs is reported as such (11), with the first bad record found in it, if any.

What passing means. Without a pin: the bundle is what the holder of the signing key signed,
and internally consistent — not that the log was never rewritten, since the holder of the
key can rewrite it and sign again. With a pin: additionally, everything recorded up to the
pinned head is in this log unchanged.

Large bundles are checked with worker processes: this process reads the files, frames the
event lines, checks the order and links of the chain and pairs each record with its event;
the workers hash and parse, a batch of lines at a time (`_check_batch`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import time
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from multiprocessing import get_context
from pathlib import Path
from typing import IO, Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.audit import chain, fastjcs, heads, layout, merkle
from app.audit.heads import TreeHead

_sha256 = hashlib.sha256
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Bundles above this size are checked by worker processes, one per group of files.
PARALLEL_BYTES = 64 * 1024 * 1024


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
        """One line: `[13 chain] ledger/events.jsonl line 42 (seq 42): ...`."""
        where = self.file or ""
        if self.line is not None:
            where += f" line {self.line}"
        if self.seq is not None:
            where += f" (seq {self.seq})"
        label = f"[{int(self.failure)} {_LABEL.get(self.failure, self.failure.name.lower())}]"
        return f"{label} {where.strip()}: {self.detail}" if where else f"{label} {self.detail}"


class _Stop(Exception):
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


# --- reading members ---------------------------------------------------------------------


def _lines(member: IO[bytes], digest: Any, counter: list[int]) -> Iterator[bytes]:
    """The lines of a member (without newlines), hashing every byte read into `digest`."""
    rest = b""
    while chunk := member.read(1 << 20):
        digest.update(chunk)
        counter[0] += len(chunk)
        if rest:
            chunk = rest + chunk
        parts = chunk.split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


@dataclass(frozen=True)
class _Context:
    """What every group needs, picklable for worker processes."""

    source: str | bytes
    project: str
    mode: str
    files: dict[str, dict[str, Any]]
    anchor: TreeHead
    keys: tuple[bytes, ...]
    pin_size: int | None


def _open(source: str | bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)


def _opened(ctx: _Context, bundle: zipfile.ZipFile | None) -> Any:
    """The bundle already open in this process, or the bundle opened anew (a worker)."""
    return contextlib.nullcontext(bundle) if bundle is not None else _open(ctx.source)


@dataclass
class _FileCheck:
    """One member read through: its digest verdict and the first problem of its records."""

    name: str
    lines: int = 0
    digest_ok: bool = True
    problem: Problem | None = None
    unreadable: str = ""


def _read_member(
    bundle: zipfile.ZipFile, ctx: _Context, name: str, check: Any
) -> _FileCheck:
    """Read `name` line by line through `check(lines)`, then compare its digest and size."""
    result = _FileCheck(name)
    digest = _sha256()
    size = [0]
    try:
        with bundle.open(name) as member:
            lines = _lines(member, digest, size)
            try:
                result.lines = check(lines)
            except _Stop as stop:
                result.problem = stop.problem
            for _ in lines:  # the rest still counts for the digest
                pass
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        result.unreadable = str(error) or type(error).__name__
        result.digest_ok = False
        return result
    expected = ctx.files[name]
    result.digest_ok = digest.hexdigest() == expected.get("sha256") and size[0] == expected.get(
        "bytes"
    )
    return result


def _count_lines(lines: Iterator[bytes]) -> int:
    count = 0
    for count, _ in enumerate(lines, 1):  # noqa: B007
        pass
    return count


# --- the ledger: events, proofs, heads ----------------------------------------------------


class _Stream:
    """A member read line by line, hashed as it is read; a read error ends it (noted)."""

    def __init__(self, bundle: zipfile.ZipFile, name: str) -> None:
        self.name = name
        self.digest = _sha256()
        self.size = 0
        self.lines = 0
        self.error = ""
        self._member = bundle.open(name)

    def __iter__(self) -> Iterator[bytes]:
        rest = b""
        digest = self.digest
        try:
            while chunk := self._member.read(1 << 20):
                digest.update(chunk)
                self.size += len(chunk)
                if rest:
                    chunk = rest + chunk
                parts = chunk.split(b"\n")
                rest = parts.pop()
                self.lines += len(parts)
                yield from parts
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
            self.error = str(error) or type(error).__name__
            return
        finally:
            self._member.close()
        if rest:
            self.lines += 1
            yield rest

    def check(self, ctx: _Context, problem: Problem | None) -> _FileCheck:
        """Drained (for the digest), compared with the manifest."""
        result = _FileCheck(self.name, lines=self.lines, problem=problem, unreadable=self.error)
        expected = ctx.files[self.name]
        result.digest_ok = (
            not self.error
            and self.digest.hexdigest() == expected.get("sha256")
            and self.size == expected.get("bytes")
        )
        return result


@dataclass
class _LedgerResult:
    files: list[_FileCheck]
    problem: Problem | None = None
    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    hashes: bytes = b""  # full scope: 32 bytes per event from seq 1
    by_seq: dict[int, bytes] = field(default_factory=dict)  # partial scope
    erased: set[str] = field(default_factory=set)
    records: int = 0
    uncovered: int = 0
    erased_records: int = 0
    head_roots: dict[int, str] = field(default_factory=dict)
    root_at_pin: bytes | None = None
    consistency: Problem | None = None
    head_problem: Problem | None = None


def _event_value(canonical: bytes, project: str, name: str, line: int) -> dict[str, Any]:
    """The event a line's canonical bytes encode, checked to be canonical and well formed."""
    try:
        value = fastjcs.loads_canonical(canonical)
    except ValueError as error:
        raise _Stop(
            Problem(Failure.RECORD_HASH, f"the event is not canonical JSON ({error})", name, line)
        ) from None
    seq = value.get("seq") if isinstance(value, dict) else None
    if not isinstance(value, dict) or value.keys() != chain.FIELDS or not _well_formed(value):
        raise _Stop(
            Problem(Failure.RECORD_HASH, "the line is not an event of the ledger's form", name,
                    line, seq if isinstance(seq, int) else None)
        )  # fmt: skip
    if value["project"] != project:
        raise _Stop(
            Problem(Failure.RECORD_HASH, f"the event belongs to project {value['project']!r}",
                    name, line, seq)
        )  # fmt: skip
    return value


def _well_formed(event: dict[str, Any]) -> bool:
    seq, kind, created_at = event["seq"], event["kind"], event["created_at"]
    return (
        isinstance(seq, int)
        and not isinstance(seq, bool)
        and seq >= 1
        and isinstance(kind, str)
        and bool(kind)
        and isinstance(created_at, str)
        and _TIME.fullmatch(created_at) is not None
        and isinstance(event["payload"], dict)
    )


def _disagreement(record: dict[str, Any], payload: dict[str, Any]) -> str | None:
    """The first member a request record and its ledger event give differently."""
    for member in layout.REQUEST_MEMBERS:
        if member in payload and member in record and payload[member] != record[member]:
            return member
    start = payload.get("start_time_unix_nano")
    if start is not None and start != str(record.get("start_time_unix_nano")):
        return "start_time_unix_nano"
    return None


_FRAME_HEAD = b'{"event":'
_FRAME_TAIL = 154  # ,"hash":"<64 hex>","prev_hash":"<64 hex>"}
_SEQ_TAG = b',"seq":'
_LEDGER_TAG = b',"ledger":'
_NO_LEDGER = b',"ledger":null}'
_GENESIS_HEX = chain.GENESIS.hex()
BATCH = 2000  # events (with their records) per unit of work


# An item of work: (event line number, event line, record line number, record line).
# No event (0, b""): a record stored before the ledger began. No record (0, None).
_Item = tuple[int, bytes, int, bytes | None]


@dataclass
class _BatchResult:
    """What `_check_batch` found; `problem` is the first bad line of the batch."""

    problem: Problem | None = None
    erased: list[str] = field(default_factory=list)  # pseudonyms erasure events name
    claims: list[tuple[int, int, str | None]] = field(default_factory=list)  # marked erased
    subjects: dict[str, tuple[int, int]] = field(default_factory=dict)  # first of each
    uncovered: int = 0
    erased_records: int = 0


def _bad_record(line: int, detail: str, seq: int | None = None) -> _Stop:
    return _Stop(Problem(Failure.RECORD_HASH, detail, layout.REQUESTS, line, seq))


def _check_batch(project: str, items: Sequence[_Item]) -> _BatchResult:
    """The expensive, independent checks of a run of lines (a worker process's share).

    For each event: SHA-256(prev_hash || bytes) is its hash, and the bytes are the canonical
    JSON of a well-formed event of this project. For each request record: it is the record
    of its event's request (its trace and the members the event records agree), and says
    whether it is erased. The chain's links, the order and the pairing are checked by the
    caller, which reads the files.
    """
    result = _BatchResult()
    sha256, fromhex = _sha256, bytes.fromhex
    name = layout.EVENTS
    try:
        for number, line, record_number, record_line in items:
            if not number:  # a record without a ledger event
                assert record_line is not None
                record = _record_of(record_line, record_number)
                if record.get("ledger", 0) is not None or record["erased"]:
                    raise _bad_record(record_number, "its ledger event is not in the bundle's "
                                      "ledger")  # fmt: skip
                result.uncovered += 1
                continue
            canonical, tail = line[9:-_FRAME_TAIL], line[-_FRAME_TAIL:]
            try:
                digest = sha256(fromhex(tail[88:152].decode()) + canonical).hexdigest()
            except ValueError:
                digest = ""
            if digest != tail[9:73].decode():
                raise _Stop(Problem(Failure.RECORD_HASH, "the event does not hash to its hash",
                                    name, number))  # fmt: skip
            event = _event_value(canonical, project, name, number)
            seq, payload = event["seq"], event["payload"]
            pseudonym = layout.erased_pseudonym(event["kind"], payload)
            if pseudonym is not None:
                result.erased.append(pseudonym)
            if record_line is None:
                continue
            record = _record_of(record_line[: -len(line) - 11] + b"}", record_number)
            if "ledger" in record:
                raise _bad_record(record_number, "the record names its ledger event twice", seq)
            if event["kind"] != layout.REQUEST_KIND:
                raise _bad_record(record_number, "its ledger event is not a request event", seq)
            if payload.get("trace_id") != record.get("trace_id"):
                raise _bad_record(record_number, "its ledger event names another request", seq)
            member = _disagreement(record, payload)
            if member is not None:
                raise _bad_record(record_number, f"its {member} is not the one its ledger "
                                  "event records", seq)  # fmt: skip
            subject = layout.subject_pseudonym(payload)
            if record["erased"]:
                result.erased_records += 1
                result.claims.append((record_number, seq, subject))
            elif subject is not None and subject not in result.subjects:
                result.subjects[subject] = (record_number, seq)
    except _Stop as stop:
        result.problem = stop.problem
    return result


def _record_of(line: bytes, number: int) -> dict[str, Any]:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise _bad_record(number, "not a JSON record") from None
    if not isinstance(record, dict) or not isinstance(record.get("erased"), bool):
        raise _bad_record(number, "not a request record")
    return record


class _Pass:
    """One pass over `ledger/events.jsonl` and `records/requests.jsonl` together.

    This side reads: it frames each event line, checks the chain's order and links (their
    hashes as written; `_check_batch` checks each hash against its bytes) and pairs each
    request record with its event — records are in seq order and end with their event's
    line, so pairing is comparing bytes. The rest goes out in batches to `_check_batch`, run
    here or in worker processes.
    """

    def __init__(self, ctx: _Context, result: _LedgerResult, pool: Any) -> None:
        self.ctx = ctx
        self.result = result
        self.pool = pool
        self.full = ctx.mode == layout.FULL
        self.runs: list[tuple[int, int]] = []
        self.hashes = bytearray()
        self.claims: list[tuple[int, int, str | None]] = []
        self.subjects: dict[str, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._pending: list[Any] = []

    def _submit(self, batch: list[_Item]) -> None:
        project = self.ctx.project
        if self.pool is None:
            self._merge(_check_batch(project, batch))
            return
        self._pending.append(self.pool.submit(_check_batch, project, batch))
        while len(self._pending) > 4 * max(getattr(self.pool, "_max_workers", 1), 1):
            self._merge(self._pending.pop(0).result())

    def _merge(self, found: _BatchResult) -> None:
        if found.problem is not None:
            self.problems.append(found.problem)
        self.result.erased.update(found.erased)
        self.claims += found.claims
        for subject, where in found.subjects.items():
            self.subjects.setdefault(subject, where)
        self.result.uncovered += found.uncovered
        self.result.erased_records += found.erased_records

    def run(self, events: Iterator[bytes], records: Iterator[bytes]) -> None:
        """Read both files; raise the first problem of the reading side (the workers' are
        collected in `problems`)."""
        name = layout.EVENTS
        full = self.full
        hashes, runs, by_seq = self.hashes, self.runs, self.result.by_seq
        fromhex = bytes.fromhex
        next_records = enumerate(records, 1)
        record_number, record_line = next(next_records, (0, None))
        last_seq, last_hash = 0, _GENESIS_HEX
        batch: list[_Item] = []
        number = 0
        for number, line in enumerate(events, 1):
            tail = line[-_FRAME_TAIL:]
            # The hashes' hex is checked where it is used: a stored hash must equal the hex
            # digest the worker computes; a link must equal the hash before it (or, at the
            # start of a run, be hex).
            if (
                len(line) <= len(_FRAME_HEAD) + _FRAME_TAIL
                or not line.startswith(_FRAME_HEAD)
                or tail[:9] != b',"hash":"'
                or tail[73:88] != b'","prev_hash":"'
                or tail[152:] != b'"}'
                or not tail.isascii()
            ):
                raise _Stop(Problem(Failure.RECORD_HASH, "not an event line of the bundle's "
                                    "form", name, number))  # fmt: skip
            stored, prev = tail[9:73].decode(), tail[88:152].decode()
            try:
                stored_bytes = fromhex(stored)
            except ValueError:
                raise _Stop(Problem(Failure.RECORD_HASH, "the event does not hash to its hash",
                                    name, number)) from None  # fmt: skip
            at = line.rfind(_SEQ_TAG, 0, -_FRAME_TAIL)
            digits = line[at + 7 : -_FRAME_TAIL - 1] if at > 0 else b""
            seq = int(digits) if digits.isdigit() and digits[:1] != b"0" else 0
            if not seq:
                raise _Stop(Problem(Failure.RECORD_HASH, "the line is not an event of the "
                                    "ledger's form", name, number))  # fmt: skip
            if full:
                if seq != number:
                    what = "is missing" if seq > number else "comes again"
                    raise _Stop(Problem(Failure.CHAIN, f"seq {number} {what} (found seq {seq})",
                                        name, number, seq))  # fmt: skip
                if prev != last_hash:
                    raise _Stop(Problem(Failure.CHAIN, "the event does not link to the one "
                                        "before", name, number, seq))  # fmt: skip
                hashes += stored_bytes
            else:
                if seq <= last_seq:
                    raise _Stop(Problem(Failure.CHAIN, f"seq {seq} comes after seq {last_seq}",
                                        name, number, seq))  # fmt: skip
                if runs and seq == last_seq + 1:
                    if prev != last_hash:
                        raise _Stop(Problem(Failure.CHAIN, "the event does not link to the one "
                                            "before", name, number, seq))  # fmt: skip
                    runs[-1] = (runs[-1][0], seq)
                else:
                    if not _HEX64.fullmatch(prev):
                        raise _Stop(Problem(Failure.RECORD_HASH, "not an event line of the "
                                            "bundle's form", name, number, seq))  # fmt: skip
                    runs.append((seq, seq))
                by_seq[seq] = stored_bytes
            last_seq, last_hash = seq, stored
            if (
                record_line is not None
                and record_line.endswith(b"}")
                and record_line[-len(line) - 1 : -1] == line
                and record_line[-len(line) - 11 : -len(line) - 1] == _LEDGER_TAG
            ):
                batch.append((number, line, record_number, record_line))
                record_number, record_line = next(next_records, (0, None))
            else:
                batch.append((number, line, 0, None))
            if len(batch) >= BATCH:
                self._submit(batch)
                batch = []
        self.result.events = number
        # What is left are the records stored before the ledger began, or strays.
        while record_line is not None:
            if not record_line.endswith(_NO_LEDGER):
                self._submit(batch)
                self._drain()
                raise _bad_record(record_number, "its ledger event is not in the bundle's ledger "
                                  "(or the records are not in ledger order)")  # fmt: skip
            batch.append((0, b"", record_number, record_line))
            if len(batch) >= BATCH:
                self._submit(batch)
                batch = []
            record_number, record_line = next(next_records, (0, None))
        self._submit(batch)
        self._drain()
        self.result.hashes = bytes(hashes)

    def _drain(self) -> None:
        while self._pending:
            self._merge(self._pending.pop(0).result())

    def erasures(self) -> None:
        """The records marked erased are those whose subject an erasure event names."""
        erased = self.result.erased
        for line, seq, pseudonym in self.claims:
            if pseudonym not in erased:
                raise _bad_record(line, "marked erased, but no erasure event in the ledger "
                                  "names its subject", seq)  # fmt: skip
        for pseudonym in erased:
            found = self.subjects.get(pseudonym)
            if found is not None:
                detail = "its subject was erased (an erasure event names it) but the record "
                raise _bad_record(found[0], detail + "is not marked erased", found[1])


def _check_ledger(
    ctx: _Context, opened: zipfile.ZipFile | None = None, workers: int = 0
) -> _LedgerResult:
    """The ledger and the request records (events, records, proofs, heads); `workers`
    processes share the per-line checks (0: all in this process)."""
    result = _LedgerResult(files=[])
    anchor = ctx.anchor
    with contextlib.ExitStack() as stack:
        pool = None
        if workers:
            pool = stack.enter_context(
                ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
            )
        checker = _Pass(ctx, result, pool)
        bundle = stack.enter_context(_opened(ctx, opened))
        events, records = _Stream(bundle, layout.EVENTS), _Stream(bundle, layout.REQUESTS)
        event_lines, record_lines = iter(events), iter(records)
        problem: Problem | None = None
        try:
            checker.run(event_lines, record_lines)
            checker.erasures()
        except _Stop as stop:
            problem = stop.problem
        checker._drain()
        # The first bad line: the reader's, or a worker's at an earlier line of the file.
        found = [p for p in [problem, *checker.problems] if p is not None]
        if found:
            problem = min(found, key=_position)
        for _ in event_lines:  # the rest still counts for the digests
            pass
        for _ in record_lines:
            pass
        result.problem = problem
        in_events = problem is not None and problem.file == layout.EVENTS
        result.files.append(events.check(ctx, problem if in_events else None))
        result.files.append(records.check(ctx, problem if problem and not in_events else None))
        result.records = records.lines
        if result.problem is None and not events.error and not records.error:
            result.problem = _tree_problem(ctx, result, checker, bundle)
        heads_file = _read_member(
            bundle, ctx, layout.HEADS, lambda lines: _check_heads(ctx, result, lines)
        )
        result.files.append(heads_file)
    if anchor.tree_size and ctx.pin_size and ctx.mode == layout.FULL and result.problem is None:
        size = ctx.pin_size
        if 0 < size <= len(result.hashes) // 32:
            leaves = [
                merkle.leaf_hash(result.hashes[i : i + 32]) for i in range(0, size * 32, 32)
            ]
            result.root_at_pin = merkle.root(leaves)
    return result


def _position(problem: Problem) -> tuple[int, int, int]:
    """Sort key: events before records, then by line; a bad hash before a bad link."""
    return (
        0 if problem.file == layout.EVENTS else 1,
        problem.line or 0,
        0 if problem.failure == Failure.RECORD_HASH else 1,
    )


def _tree_problem(
    ctx: _Context, result: _LedgerResult, checker: _Pass, bundle: zipfile.ZipFile
) -> Problem | None:
    """Full scope: the events are the whole log the anchor signed. Partial: the proofs."""
    anchor = ctx.anchor
    if ctx.mode == layout.FULL:
        count = len(result.hashes) // 32
        result.first_seq, result.last_seq = (1, count) if count else (None, None)
        if count != anchor.tree_size:
            return Problem(
                Failure.CHAIN,
                f"the ledger has {count} events but the signed head covers {anchor.tree_size}: "
                + ("events were cut off" if count < anchor.tree_size else "events were added"),
                layout.EVENTS, count or None, count + 1 if count < anchor.tree_size else None,
            )  # fmt: skip
        leaves = [merkle.leaf_hash(result.hashes[i : i + 32]) for i in range(0, count * 32, 32)]
        if merkle.root(leaves) != anchor.root_hash:
            return Problem(
                Failure.INCLUSION,
                "the events do not give the root of the signed head: the log is not the one "
                "that was signed",
                layout.EVENTS,
            )
        return None
    if checker.runs:
        result.first_seq, result.last_seq = checker.runs[0][0], checker.runs[-1][1]
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
                raise _Stop(Problem(Failure.INCLUSION, "not a proof line", layout.PROOFS,
                                    count)) from None  # fmt: skip
        return count

    proofs_file = _read_member(bundle, ctx, layout.PROOFS, read_proofs)
    result.files.append(proofs_file)
    if proofs_file.problem is not None:
        return proofs_file.problem
    for first, last in checker.runs:
        found = proofs.pop((first, last), None)
        if found is None:
            problem.append(Problem(Failure.INCLUSION, f"no inclusion proof covers seq {first}-"
                                   f"{last}", layout.EVENTS, None, first))  # fmt: skip
            break
        number, proof = found
        path = proof.get("path")
        ok = (
            proof.get("tree_size") == anchor.tree_size
            and proof.get("leaf_index") == last - 1
            and isinstance(path, list)
            and all(isinstance(p, str) and _HEX64.fullmatch(p) for p in path)
            and merkle.verify_inclusion(
                merkle.leaf_hash(result.by_seq[last]), last - 1, anchor.tree_size,
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


def _check_heads(ctx: _Context, result: _LedgerResult, lines: Iterator[bytes]) -> int:
    """Each earlier head: signed by a trusted key (15), consistent with the anchor (17)."""
    keys = _keys(ctx.keys)
    anchor = ctx.anchor
    count = 0
    for count, line in enumerate(lines, 1):
        try:
            entry = orjson.loads(line)
            size, root_hex = int(entry["tree_size"]), str(entry["root_hash"])
            path = [bytes.fromhex(p) for p in entry["consistency"]]
            root = bytes.fromhex(root_hex)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise _Stop(Problem(Failure.CONSISTENCY, "not a head line", layout.HEADS,
                                count)) from None  # fmt: skip
        signed = entry.get("head")
        if signed is not None and result.head_problem is None:
            problem = _head_problem(signed, keys, ctx.project, layout.HEADS, count)
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


# --- request records ----------------------------------------------------------------------


# --- every other file: digest and count -------------------------------------------------


def _check_plain(
    ctx: _Context, names: Sequence[str], opened: zipfile.ZipFile | None = None
) -> list[_FileCheck]:
    """Group 3: digests of the other files, and their record counts (lines, Parquet rows)."""
    checks = []
    with _opened(ctx, opened) as bundle:
        for name in names:
            if int(ctx.files[name].get("bytes") or 0) <= _IN_MEMORY:
                check = _read_small(bundle, ctx, name)
            else:
                check = _read_member(bundle, ctx, name, _count_lines)
                if name.endswith(".parquet") and check.digest_ok:
                    with bundle.open(name) as member:
                        check.lines = _parquet_rows(member)
            checks.append(check)
    return checks


_IN_MEMORY = 32 * 1024 * 1024


def _read_small(bundle: zipfile.ZipFile, ctx: _Context, name: str) -> _FileCheck:
    check = _FileCheck(name)
    try:
        data = bundle.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        check.unreadable = str(error) or type(error).__name__
        check.digest_ok = False
        return check
    expected = ctx.files[name]
    check.digest_ok = (
        _sha256(data).hexdigest() == expected.get("sha256") and len(data) == expected.get("bytes")
    )
    if name.endswith(".parquet"):
        check.lines = _parquet_rows(data) if check.digest_ok else 0
    else:
        check.lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return check


def _parquet_rows(source: bytes | IO[bytes]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        stream = pa.BufferReader(source) if isinstance(source, bytes) else source
        return int(pq.read_metadata(stream).num_rows)
    except Exception:  # a file whose digest matched but pyarrow cannot read: a count of -1
        return -1


# --- keys, manifest, heads -----------------------------------------------------------------


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _keys(raw_keys: Sequence[bytes]) -> dict[str, Ed25519PublicKey]:
    keys = [Ed25519PublicKey.from_public_bytes(raw) for raw in raw_keys]
    return {heads.key_id(k): k for k in keys}


def _head_problem(
    data: Any, keys: dict[str, Ed25519PublicKey], project: str, file: str, line: int | None
) -> Problem | None:
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


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            raise ValueError(f"the manifest names {name!r} twice")
        found[name] = value
    return found


def _manifest(
    bundle: zipfile.ZipFile, keys: dict[str, Ed25519PublicKey]
) -> tuple[dict[str, Any], str]:
    """The manifest, once its signature verifies under one of `keys`; its signer's key id."""
    names = bundle.namelist()
    if len(names) != len(set(names)):
        raise _Stop(Problem(Failure.FILE_DIGEST, "the zip holds a file name twice"))
    try:
        data = bundle.read(layout.MANIFEST)
        signature = bundle.read(layout.SIGNATURE)
    except KeyError as error:
        raise _Stop(Problem(Failure.MANIFEST_SIGNATURE, f"the bundle has no {error}")) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise _Stop(
            Problem(Failure.MANIFEST_SIGNATURE, f"the manifest cannot be read: {error}")
        ) from None
    signer = next((kid for kid, k in keys.items() if heads.verify_bytes(k, data, signature)), None)
    if signer is None:
        raise _Stop(Problem(Failure.MANIFEST_SIGNATURE, "manifest.sig is not a signature of "
                            "manifest.json by a key you trust", layout.MANIFEST))  # fmt: skip
    try:
        manifest = json.loads(data, object_pairs_hook=_no_duplicates)
        if not isinstance(manifest, dict) or manifest.get("format") != layout.FORMAT:
            raise ValueError(f"not a {layout.FORMAT} manifest")
        for part in ("scope", "ledger", "counts", "files"):
            if not isinstance(manifest.get(part), dict):
                raise ValueError(f"the manifest has no {part}")
    except ValueError as error:
        raise _Stop(Problem(Failure.MANIFEST_SIGNATURE, f"signed, but unusable: {error}",
                            layout.MANIFEST)) from None  # fmt: skip
    return manifest, signer


# --- putting it together ------------------------------------------------------------------


def verify_bundle(
    bundle: str | Path | bytes,
    public_keys: Sequence[Ed25519PublicKey],
    pin: TreeHead | None = None,
    *,
    workers: int | None = None,
) -> Verdict:
    """Check a bundle (a path, or the zip's bytes) against the keys you trust.

    `pin`: a head you kept from an earlier export of this project (`heads.head_from_json`
    of its HEAD.json). `workers`: processes for large bundles (None: automatic, 0: none).

    >>> key = heads.load_public_key("warden.pub")  # doctest: +SKIP
    >>> verdict = verify_bundle("bundle.zip", [key])  # doctest: +SKIP
    >>> verdict.exit_code, verdict.summary()  # doctest: +SKIP
    (0, 'OK (operator-signed only): signed by key 21fe31dfa154a261; no pinned head: ...')
    """
    started = time.perf_counter()
    source: str | bytes = bundle if isinstance(bundle, bytes) else str(bundle)
    keys = {heads.key_id(k): k for k in public_keys}
    verdict = Verdict(problem=None)
    try:
        _verify(source, keys, pin, workers, verdict)
    except _Stop as stop:
        verdict.problem = stop.problem
    verdict.seconds = time.perf_counter() - started
    return verdict


def _verify(
    source: str | bytes,
    keys: dict[str, Ed25519PublicKey],
    pin: TreeHead | None,
    workers: int | None,
    verdict: Verdict,
) -> None:
    try:
        bundle = _open(source)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise _Stop(Problem(Failure.FILE_DIGEST, f"not a readable zip: {error}")) from None
    with bundle:
        manifest, signer = _manifest(bundle, keys)
        verdict.key_id = signer
        scope, ledger, files = manifest["scope"], manifest["ledger"], manifest["files"]
        verdict.project = str(scope.get("project"))
        verdict.mode = str(scope.get("mode"))
        if verdict.mode not in (layout.FULL, layout.PARTIAL):
            raise _Stop(Problem(Failure.MANIFEST_SIGNATURE, "the manifest's scope has no mode",
                                layout.MANIFEST))  # fmt: skip
        problem = _head_problem(ledger.get("anchor"), keys, verdict.project, layout.MANIFEST, None)
        if problem is None:
            for signed in ledger.get("heads_in_range") or []:
                problem = problem or _head_problem(signed, keys, verdict.project,
                                                   layout.MANIFEST, None)  # fmt: skip
        if problem is not None:
            raise _Stop(problem)
        verdict.anchor = anchor = heads.head_from_json(ledger["anchor"])
        present = set(bundle.namelist()) - layout.UNLISTED
        listed = set(files)
        if present != listed:
            missing, extra = sorted(listed - present), sorted(present - listed)
            detail = f"missing {missing}" if missing else f"not in the manifest: {extra}"
            raise _Stop(Problem(Failure.FILE_DIGEST, f"the files are not the manifest's: {detail}"))
        for required in (layout.EVENTS, layout.HEADS, layout.REQUESTS):
            if required not in files:
                raise _Stop(Problem(Failure.FILE_DIGEST, f"the bundle has no {required}"))
        bundle_bytes = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
        if isinstance(source, str):
            with bundle.open(layout.PUBLIC_KEY) as pem_file:
                if _pem_key_id(pem_file.read()) != signer:
                    verdict.warnings.append(
                        "the bundle's public-key.pem is not the key that verified it; "
                        "the key you gave was used"
                    )
    if pin is not None:
        _check_pin_signature(pin, keys, verdict.project)
    ctx = _Context(
        source=source,
        project=verdict.project,
        mode=verdict.mode,
        files=files,
        anchor=anchor,
        keys=tuple(_raw(k) for k in keys.values()),
        pin_size=pin.tree_size if pin is not None else None,
    )
    plain = sorted(set(files) - {layout.EVENTS, layout.PROOFS, layout.HEADS, layout.REQUESTS})
    cores = os.cpu_count() or 1
    parallel = workers if workers is not None else (
        min(cores, 8) if bundle_bytes > PARALLEL_BYTES and cores > 1 else 0
    )
    if parallel and isinstance(source, str):
        ledger_result = _check_ledger(ctx, workers=parallel)
        plain_checks = _check_plain(ctx, plain)
    else:
        with _open(source) as opened:
            ledger_result = _check_ledger(ctx, opened)
            plain_checks = _check_plain(ctx, plain, opened)
    _conclude(ctx, manifest, pin, ledger_result, plain_checks, verdict)


def _pem_key_id(pem: bytes) -> str | None:
    try:
        return heads.key_id(heads.load_public_key(pem))
    except (ValueError, TypeError):
        return None


def _check_pin_signature(pin: TreeHead, keys: dict[str, Ed25519PublicKey], project: str) -> None:
    key = keys.get(pin.key_id)
    if key is None or not heads.verify_head(pin, key):
        raise _Stop(Problem(Failure.CONSISTENCY, "the pinned head is not signed by a key you "
                            "trust"))  # fmt: skip
    if pin.project != project:
        raise _Stop(Problem(Failure.CONSISTENCY, f"the pinned head is of project {pin.project!r}, "
                            f"the bundle of {project!r}"))  # fmt: skip


def _conclude(
    ctx: _Context,
    manifest: dict[str, Any],
    pin: TreeHead | None,
    ledger: _LedgerResult,
    plain: list[_FileCheck],
    verdict: Verdict,
) -> None:
    checks = [*ledger.files, *plain]
    verdict.records, verdict.events = ledger.records, ledger.events
    verdict.erased, verdict.uncovered = ledger.erased_records, ledger.uncovered
    # 11: a file that is not the one signed; the first bad record in it, if one was found.
    for check in sorted(checks, key=lambda c: c.name):
        if not check.digest_ok:
            why = (
                f"cannot be read ({check.unreadable})"
                if check.unreadable
                else "its SHA-256 is not the manifest's"
            )
            if check.problem is not None:
                p = check.problem
                raise _Stop(Problem(Failure.FILE_DIGEST, f"{why}; first bad record: {p.detail}",
                                    check.name, p.line, p.seq))  # fmt: skip
            raise _Stop(Problem(Failure.FILE_DIGEST, why, check.name))
    # 12-14: the first bad record of the ledger and the request records.
    if ledger.problem is not None:
        raise _Stop(ledger.problem)
    if ledger.head_problem is not None:
        raise _Stop(ledger.head_problem)
    _check_counts(manifest, ledger, checks)
    if ledger.consistency is not None:
        raise _Stop(ledger.consistency)
    if pin is not None:
        _check_pin(ctx, pin, ledger)
        verdict.pinned = pin


def _check_counts(
    manifest: dict[str, Any],
    ledger: _LedgerResult,
    checks: list[_FileCheck],
) -> None:
    files, counts, summary = manifest["files"], manifest["counts"], manifest["ledger"]
    for check in sorted(checks, key=lambda c: c.name):
        expected = files[check.name].get("records")
        if expected is not None and expected != check.lines:
            raise _Stop(Problem(Failure.COUNTS, f"the manifest says {expected} records, the file "
                                f"holds {check.lines}", check.name))  # fmt: skip
    found = {
        "requests": ledger.records,
        "ledger_events": ledger.events,
        "erased_requests": ledger.erased_records,
        "requests_without_ledger_event": ledger.uncovered,
    }
    for key, value in found.items():
        if counts.get(key) != value:
            raise _Stop(Problem(Failure.COUNTS, f"the manifest counts {counts.get(key)} {key}, "
                                f"the bundle holds {value}", layout.MANIFEST))  # fmt: skip
    ranges = {"events": ledger.events, "first_seq": ledger.first_seq, "last_seq": ledger.last_seq}
    for key, found_value in ranges.items():
        if summary.get(key) != found_value:
            raise _Stop(Problem(Failure.COUNTS, f"the manifest's ledger {key} is "
                                f"{summary.get(key)}, the bundle's is {found_value}",
                                layout.MANIFEST))  # fmt: skip


def _check_pin(ctx: _Context, pin: TreeHead, ledger: _LedgerResult) -> None:
    anchor = ctx.anchor
    size = pin.tree_size
    if size > anchor.tree_size:
        raise _Stop(Problem(Failure.CONSISTENCY, f"your pinned head has {size} events, this "
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
            raise _Stop(Problem(Failure.CONSISTENCY, f"the bundle has no consistency proof from "
                                f"{size} events, your pinned head's size (export again with "
                                f"--prove-from {size})", layout.HEADS))  # fmt: skip
        root = bytes.fromhex(root_hex)
    if root != pin.root_hash:
        raise _Stop(Problem(Failure.CONSISTENCY, f"the log was rewritten: its first {size} events "
                            f"give root {root.hex()[:16]}…, your pinned head says "
                            f"{pin.root_hash.hex()[:16]}…"))  # fmt: skip
