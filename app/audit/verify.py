"""Offline verification of an export bundle: no database, no network, only the bundle and keys.

`verify_bundle(bundle, [public_key], pin=None)` checks, in this order:

1. the manifest's Ed25519 signature under a key you trust (`manifest.sig`; the bundle's own
   `public-key.pem` is never used to decide), and that it is a `layout.FORMAT` manifest .. exit 10
2. every signed head the bundle names: key id and signature ............. exit 15
3. the zip holds exactly the manifest's files, each with its SHA-256 and size; the parts of
   the ledger and of the request records are numbered 1, 2, 3 ... without a gap .. exit 11
4. each ledger event: its line carries the canonical bytes of an event of this project
   (RFC 8785, re-encoded and compared byte for byte), and SHA-256(prev_hash || those bytes)
   is its hash; each request record names its event (seq and hash: `layout.ledger_reference`),
   is in the requests part of its event's part, in ledger order, and agrees with the event
   (trace, fingerprint, models, outcome, ...); the `erased` markers are those the ledger's
   `erasure` events imply ................................................ exit 12
5. the chain: full scope — seq 1, 2, 3 ... each linked to the one before, across the parts,
   up to the anchor head's size; partial scope — increasing seqs, each run of consecutive
   ones linked ............................................................ exit 13
6. the Merkle tree: full scope — the events give the anchor's root; partial scope — the last
   event of each run has an RFC 6962 inclusion proof against the anchor ... exit 14
7. the manifest's counts: records per file (lines, Parquet rows), events, erased ... exit 16
8. consistency: every earlier head's proof to the anchor; with `pin` (a head you kept from
   an earlier export), that the log you saw then is a prefix of this one ... exit 17

The first failure decides the exit code; its message names the file, line and seq. "First"
is in file order, whichever process found it: events before records, then by part, then by
line (a bad hash before a bad link on the same line). A file whose digest differs is reported
as such (11), with the first bad record found in it, if any.

What passing means. Without a pin: the bundle is what the holder of the signing key signed,
and internally consistent — not that the log was never rewritten, since the holder of the
key can rewrite it and sign again. With a pin: additionally, everything recorded up to the
pinned head is in this log unchanged.

How the work is split. A part of the ledger and its part of the request records are one unit
of work (`_check_part`), done whole by one process, which opens the zip itself: it inflates
and hashes both members, frames every event line, checks every hash and canonical form, the
chain inside the part and each record against its event, and hands back a small summary —
the seqs and hashes at the part's ends, the roots of the Merkle subtrees the part fills, the
erasure facts, its first problem. This process then links the parts' chains end to end,
builds the root from the subtrees, matches erasures with the records they mark across parts,
and checks the proofs, heads, counts and pin. Bundles above `PARALLEL_BYTES` are checked by
worker processes this way, one unit at a time; smaller ones in this process, the same way.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import io
import json
import operator
import os
import re
import struct
import sys
import threading
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import IO, Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.audit import chain, fastjcs, heads, layout, merkle
from app.audit.heads import TreeHead

_sha256 = hashlib.sha256
# ASCII digits only: `\d` would take any script's digits for a time's.
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Bundles above this size are checked by worker processes, one part of the ledger at a time.
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
        """One line: `[13 chain] ledger/events-00001.jsonl line 42 (seq 42): ...`."""
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
    """What this process's checks need, picklable for worker processes."""

    source: str | bytes
    project: str
    mode: str
    files: dict[str, dict[str, Any]]
    anchor: TreeHead
    keys: tuple[bytes, ...]
    pin_size: int | None


def _open(source: str | bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)


def _opened(source: str | bytes, bundle: zipfile.ZipFile | None) -> Any:
    """The bundle already open in this process, or the bundle opened anew (a worker)."""
    return contextlib.nullcontext(bundle) if bundle is not None else _open(source)


@dataclass
class _FileCheck:
    """One member read through: its digest verdict and the first problem of its records."""

    name: str
    lines: int = 0
    digest_ok: bool = True
    problem: Problem | None = None
    unreadable: str = ""


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError)


def _digest_ok(expected: dict[str, Any], digest: Any, size: int) -> bool:
    return digest.hexdigest() == expected.get("sha256") and size == expected.get("bytes")


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
    except _READ_ERRORS as error:
        result.unreadable = str(error) or type(error).__name__
        result.digest_ok = False
        return result
    result.digest_ok = _digest_ok(ctx.files[name], digest, size[0])
    return result


# Compressed bytes read at a time: a block of some 300 KB once inflated, small enough that it
# and its lines stay in the CPU's cache while they are worked on. Stored members: `_BLOCK`.
_INFLATE_IN = 64 * 1024
_BLOCK = 256 * 1024
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra field length


def _inflated(source: str | bytes, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A member's bytes, a block at a time, read from its own file handle.

    Not zipfile's reader: it computes zip's CRC-32 of every byte and copies its buffers, a
    sixth of a verifier's time, when the SHA-256 the signed manifest gives for the member
    covers every byte already. A member that does not inflate whole is unreadable.
    """
    if info.flag_bits & 0x21:  # encrypted, or compressed patched data
        raise zipfile.BadZipFile(f"{info.filename}: encrypted or patched data")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise zipfile.BadZipFile(f"{info.filename}: compression method {info.compress_type}")
    inflate = zlib.decompressobj(-zlib.MAX_WBITS) if info.compress_type else None
    with open(source, "rb") if isinstance(source, str) else io.BytesIO(source) as file:
        file.seek(info.header_offset)
        header = file.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size:
            raise EOFError(f"{info.filename}: no local header")
        magic, name_size, extra_size = _LOCAL_HEADER.unpack(header)
        name = file.read(name_size).decode("utf-8" if info.flag_bits & 0x800 else "cp437")
        if magic != b"PK\x03\x04" or name != info.orig_filename:
            raise zipfile.BadZipFile(f"{info.filename}: the local header is not the directory's")
        file.seek(extra_size, os.SEEK_CUR)
        left = info.compress_size
        while left:
            data = file.read(min(left, _INFLATE_IN if inflate is not None else _BLOCK))
            if not data:
                raise EOFError(f"{info.filename} is cut short")
            left -= len(data)
            if inflate is not None:
                data = inflate.decompress(data)
            if data:
                yield data
        if inflate is not None:
            if not inflate.eof or inflate.unused_data:
                raise zlib.error(f"{info.filename}: the deflate stream does not end with it")
            if data := inflate.flush():
                yield data


class _Stream:
    """A member read a block at a time and split into lines, hashed and counted as it is read,
    whatever the reader makes of the lines; a read error ends it (noted)."""

    def __init__(self, bundle: zipfile.ZipFile, source: str | bytes, name: str) -> None:
        self.name = name
        self.digest = _sha256()
        self.size = 0
        self.lines = 0
        self.error = ""
        self._pieces = self._read(bundle, source)

    def _read(
        self, bundle: zipfile.ZipFile, source: str | bytes
    ) -> Iterator[tuple[bytes, list[bytes], bool]]:
        """(a block as read, the lines it ends, whether the first of them began in an earlier
        block); the file's last line comes alone, as its own block, if no newline ends it."""
        rest = b""
        digest = self.digest
        try:
            for block in _inflated(source, bundle.getinfo(self.name)):
                digest.update(block)
                self.size += len(block)
                lines = block.split(b"\n")
                joined = bool(rest)
                if joined:  # no copy of the block to join a line across two
                    lines[0] = rest + lines[0]
                rest = lines.pop()
                if lines:
                    self.lines += len(lines)
                    yield block, lines, joined
        except _READ_ERRORS as error:
            self.error = str(error) or type(error).__name__
            return
        if rest:
            self.lines += 1
            yield rest, [rest], False

    def pieces(self) -> Iterator[tuple[bytes, list[bytes], bool]]:
        return self._pieces

    def each_line(self) -> Iterator[bytes]:
        for _, lines, _ in self._pieces:
            yield from lines

    def check(self, expected: dict[str, Any], problem: Problem | None) -> _FileCheck:
        """Drained (for the digest), compared with the manifest."""
        for _ in self._pieces:
            pass
        return _FileCheck(
            self.name,
            lines=self.lines,
            problem=problem if problem is not None and problem.file == self.name else None,
            unreadable=self.error,
            digest_ok=not self.error and _digest_ok(expected, self.digest, self.size),
        )


# --- one part: events part k and requests part k, checked whole ---------------------------


@dataclass(frozen=True)
class _Part:
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


@dataclass
class _PartResult:
    """What a part holds and how it ends, for this process to join the parts together."""

    number: int
    requests: str
    events_name: str | None = None
    files: list[_FileCheck] = field(default_factory=list)
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


_FRAME_HEAD = b'{"event":'
_FRAME_TAIL = 154  # ,"hash":"<64 hex>","prev_hash":"<64 hex>"}
_HASH_TAG = b',"hash":"'
_PREV_TAG = b'","prev_hash":"'
_FRAME_END = b'"}'
_HEX64_BYTES = re.compile(rb"[0-9a-f]{64}")
_NO_LEDGER = b',"ledger":null}'
_REFERENCE = b',"ledger":{"hash":"%s","seq":%d}}'  # `layout.ledger_reference`, as it ends a line
_SHARED = operator.itemgetter("trace_id", *layout.REQUEST_MEMBERS)  # compared in one go
_START = "start_time_unix_nano"


def _check_part(part: _Part, bundle: zipfile.ZipFile | None = None) -> _PartResult:
    """Everything about one part that needs no other part (see the module docstring)."""
    with _opened(part.source, bundle) as opened:
        return _PartCheck(part).run(opened)


class _PartCheck:
    """One part's check, in one process: `run` reads both files through and fills `result`."""

    def __init__(self, part: _Part) -> None:
        self.part = part
        self.result = _PartResult(part.number, part.requests, part.events)
        self.record_problem: Problem | None = None

    def run(self, bundle: zipfile.ZipFile) -> _PartResult:
        part, result = self.part, self.result
        events = _Stream(bundle, part.source, part.events) if part.events is not None else None
        records = _Stream(bundle, part.source, part.requests)
        problem: Problem | None = None
        try:
            if events is not None:
                self._events(events, records.each_line())
            else:
                self._unlinked(records.each_line())
        except _Stop as stop:
            problem = stop.problem
        # An event's problem comes first: records are checked against the events.
        result.problem = problem or self.record_problem
        if events is not None:
            result.files.append(events.check(part.expected[events.name], result.problem))
        result.files.append(records.check(part.expected[records.name], result.problem))
        return result

    def _events(self, events: _Stream, records: Iterator[bytes]) -> None:
        """The hot loop: every event line of the part, and each record with its event.

        Records are in the order of their events and end with their reference, so pairing is
        comparing bytes; the first record that pairs with no event is a problem. A record's
        problem stops the records, not the events: an event's problem would come first. What
        passes is checked once, inline; what does not is checked again, slowly, to say why.
        """
        part, result = self.part, self.result
        name, project, full = events.name, part.project, part.full
        sha256, hexlify, fromhex = _sha256, binascii.hexlify, bytes.fromhex
        loads, dumps, options, doubts = orjson.loads, orjson.dumps, fastjcs.OPTIONS, fastjcs.doubts
        decode_errors = (orjson.JSONDecodeError, orjson.JSONEncodeError)
        record_errors = (orjson.JSONDecodeError, KeyError, TypeError)
        time_ok, shared, start_member = _TIME.fullmatch, _SHARED, _START
        field_count = len(chain.FIELDS)
        request_kind, erasure_kind = layout.REQUEST_KIND, layout.ERASURE_KIND
        erased_member, subject_member = layout.ERASED_MEMBER, layout.SUBJECT_MEMBER
        reference = _REFERENCE
        claims, subjects, erased_by = result.claims, result.subjects, result.erased
        erased_records = 0
        hashes: list[bytes] = []
        record = next(records, None)
        record_number = 1
        number = last_seq = run_first = 0
        last_stored = last_digest = b""
        for block, lines, joined in events.pieces():
            # Lines where orjson's bytes might not be JCS's get the slow check (`fastjcs`).
            doubtful = {number + 1 + block.count(b"\n", 0, at) for at in doubts(block)}
            if joined and doubts(lines[0]):
                doubtful.add(number + 1)
            for line in lines:
                number += 1
                # {"event":<canonical>,"hash":"<64 hex>","prev_hash":"<64 hex>"}, offsets from
                # the end (the cheapest way to look at them, as measured)
                if (
                    line[-154:-145] != _HASH_TAG
                    or line[-81:-66] != _PREV_TAG
                    or not line.endswith(_FRAME_END)
                    or not line.startswith(_FRAME_HEAD)
                    or len(line) <= len(_FRAME_HEAD) + _FRAME_TAIL
                ):
                    raise _Stop(Problem(Failure.RECORD_HASH, "not an event line of the "
                                        "bundle's form", name, number))  # fmt: skip
                stored, link = line[-145:-81], line[-66:-2]
                canonical = line[9:-_FRAME_TAIL]
                linked = link == last_stored
                if linked:
                    prev = last_digest
                else:  # the part's first line, a run's, or a broken link (found below)
                    try:
                        prev = fromhex(link.decode("ascii"))
                    except ValueError:
                        prev = b""
                    if len(prev) != 32:
                        raise _Stop(Problem(Failure.RECORD_HASH, "the event does not hash to "
                                            "its hash", name, number))  # fmt: skip
                digest = sha256(prev + canonical).digest()
                if hexlify(digest) != stored:
                    raise _Stop(Problem(Failure.RECORD_HASH, "the event does not hash to its "
                                        "hash", name, number))  # fmt: skip
                try:
                    event = loads(canonical)
                    fast: bytes | None = dumps(event, option=options)
                except decode_errors:
                    fast = None
                if fast != canonical or number in doubtful:
                    event = _canonical_event(canonical, name, number)
                try:  # five members, each of them there: exactly `chain.FIELDS`
                    if len(event) != field_count:
                        raise KeyError("members")
                    seq, kind, payload = event["seq"], event["kind"], event["payload"]
                    created, owner = event["created_at"], event["project"]
                    well_formed = (
                        type(seq) is int
                        and seq >= 1
                        and type(kind) is str
                        and kind
                        and time_ok(created)  # TypeError unless a string
                        and type(payload) is dict
                    )
                except (KeyError, TypeError):
                    well_formed = False
                if not well_formed:
                    raise _not_an_event(event, name, number)
                if owner != project:
                    raise _Stop(Problem(Failure.RECORD_HASH, "the event belongs to project "
                                        f"{owner!r}", name, number, seq))  # fmt: skip
                if not last_seq:  # the part's first event
                    result.first_seq, result.first_prev = seq, link.decode("ascii", "replace")
                    run_first = seq
                elif full:
                    if seq != last_seq + 1:
                        what = "is missing" if seq > last_seq + 1 else "comes again"
                        raise _Stop(Problem(Failure.CHAIN, f"seq {last_seq + 1} {what} (found "
                                            f"seq {seq})", name, number, seq))  # fmt: skip
                    if not linked:
                        raise _Stop(Problem(Failure.CHAIN, "the event does not link to the one "
                                            "before", name, number, seq))  # fmt: skip
                elif seq <= last_seq:
                    raise _Stop(Problem(Failure.CHAIN, f"seq {seq} comes after seq {last_seq}",
                                        name, number, seq))  # fmt: skip
                elif seq == last_seq + 1:
                    if not linked:
                        raise _Stop(Problem(Failure.CHAIN, "the event does not link to the one "
                                            "before", name, number, seq))  # fmt: skip
                else:  # a new run: its link is to an event not in the bundle
                    if not _HEX64_BYTES.fullmatch(link):
                        raise _Stop(Problem(Failure.RECORD_HASH, "not an event line of the "
                                            "bundle's form", name, number, seq))  # fmt: skip
                    result.runs.append((run_first, last_seq, last_digest))
                    run_first = seq
                if full:
                    hashes.append(digest)
                if kind == erasure_kind:
                    pseudonym = payload.get(erased_member)
                    if type(pseudonym) is str and pseudonym:
                        erased_by.append(pseudonym)
                if record is not None:
                    suffix = reference % (stored, seq)
                    if record.endswith(suffix):
                        body = record[: -len(suffix)] + b"}"
                        try:  # `_record`'s checks, as they go when they pass
                            found = loads(body)
                            erased = found["erased"]
                            fine = (
                                type(erased) is bool
                                and "ledger" not in found
                                and kind == request_kind
                                and shared(payload) == shared(found)
                                and payload[start_member] == str(found[start_member])
                            )
                        except record_errors:
                            fine = False
                        if fine:
                            subject = payload.get(subject_member)
                            if erased:
                                erased_records += 1
                                if type(subject) is not str or not subject:
                                    subject = None
                                claims.append((record_number, seq, subject))
                            elif type(subject) is str and subject and subject not in subjects:
                                subjects[subject] = (record_number, seq)
                            record = next(records, None)
                            record_number += 1
                        else:
                            problem = self._record(body, record_number, seq, kind, payload)
                            if problem is None:
                                record = next(records, None)
                                record_number += 1
                            else:
                                self.record_problem, record = problem, None
                last_seq, last_stored, last_digest = seq, stored, digest
        result.events = number
        result.erased_records += erased_records
        if number:
            result.last_seq, result.last_hash = last_seq, last_digest
            if full:
                result.subtrees = _subtrees(run_first - 1, hashes)
                if part.pin_size is not None and run_first <= part.pin_size <= last_seq:
                    result.hashes = b"".join(hashes)
            else:
                result.runs.append((run_first, last_seq, last_digest))
        if record is not None:
            self.record_problem = Problem(
                Failure.RECORD_HASH,
                f"its ledger event is not in {name} (or the records are not in ledger order)",
                part.requests, record_number,
            )  # fmt: skip

    def _record(
        self, body: bytes, number: int, seq: int, kind: str, payload: dict[str, Any]
    ) -> Problem | None:
        """A request record (without its reference) against its event's payload."""
        result = self.result
        record = _record_of(body, self.part.requests, number)
        if isinstance(record, Problem):
            return record

        def bad(detail: str) -> Problem:
            return Problem(Failure.RECORD_HASH, detail, self.part.requests, number, seq)

        if "ledger" in record:
            return bad("the record names its ledger event twice")
        if kind != layout.REQUEST_KIND:
            return bad("its ledger event is not a request event")
        if payload.get("trace_id") != record.get("trace_id"):
            return bad("its ledger event names another request")
        member = _disagreement(record, payload)
        if member is not None:
            return bad(f"its {member} is not the one its ledger event records")
        subject = payload.get(layout.SUBJECT_MEMBER)
        if type(subject) is not str or not subject:
            subject = None
        if record["erased"]:
            result.erased_records += 1
            result.claims.append((number, seq, subject))
        elif subject is not None and subject not in result.subjects:
            result.subjects[subject] = (number, seq)
        return None

    def _unlinked(self, records: Iterator[bytes]) -> None:
        """A part of records stored before the ledger began: each `ledger` null."""
        name = self.part.requests
        for number, line in enumerate(records, 1):
            if not line.endswith(_NO_LEDGER):
                raise _Stop(Problem(Failure.RECORD_HASH, "its ledger event is not in the "
                                    "bundle's ledger (or the records are not in ledger order)",
                                    name, number))  # fmt: skip
            record = _record_of(line[: -len(_NO_LEDGER)] + b"}", name, number)
            if isinstance(record, Problem):
                raise _Stop(record)
            if "ledger" in record or record["erased"]:
                raise _Stop(Problem(Failure.RECORD_HASH, "its ledger event is not in the "
                                    "bundle's ledger", name, number))  # fmt: skip
            self.result.uncovered += 1


def _record_of(body: bytes, name: str, number: int) -> dict[str, Any] | Problem:
    try:
        record = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Problem(Failure.RECORD_HASH, "not a JSON record", name, number)
    if type(record) is not dict or type(record.get("erased")) is not bool:
        return Problem(Failure.RECORD_HASH, "not a request record", name, number)
    return record


def _canonical_event(canonical: bytes, name: str, line: int) -> Any:
    """The value of bytes the fast check could not pass: `fastjcs` decides."""
    try:
        return fastjcs.loads_canonical(canonical)
    except ValueError as error:
        raise _Stop(
            Problem(Failure.RECORD_HASH, f"the event is not canonical JSON ({error})", name, line)
        ) from None


def _not_an_event(value: Any, name: str, line: int) -> _Stop:
    seq = value.get("seq") if isinstance(value, dict) else None
    return _Stop(
        Problem(Failure.RECORD_HASH, "the line is not an event of the ledger's form", name,
                line, seq if type(seq) is int else None)
    )  # fmt: skip


def _disagreement(record: dict[str, Any], payload: dict[str, Any]) -> str | None:
    """The first member a request record and its ledger event give differently (a member
    one of them lacks is not compared)."""
    for member in layout.REQUEST_MEMBERS:
        if member in payload and member in record and payload[member] != record[member]:
            return member
    start = payload.get(_START)
    if start is not None and start != str(record.get(_START)):
        return _START
    return None


# --- the Merkle tree, from the parts' subtrees ----------------------------------------------


def _subtrees(first: int, hashes: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
    """Leaves [first, first + len(hashes)) of the log's tree as the aligned perfect subtrees
    they fill, largest first where alignment allows: (first leaf, height, root).

    A subtree of 2^h leaves starting at a multiple of 2^h is a node of RFC 6962's tree of any
    size that holds it whole, so the parts' subtrees, in order, give the root (`_root`).
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


def _root(subtrees: Iterable[tuple[int, int, bytes]]) -> bytes:
    """The root of the tree over leaves [0, n) given as consecutive aligned subtrees."""
    stack: list[tuple[int, bytes]] = []  # the compact range so far: heights decreasing
    size = 0
    for at, height, root in subtrees:
        if at != size:
            raise ValueError(f"subtrees from leaf {size} expected, not {at}")
        size += 1 << height
        while stack and stack[-1][0] == height:
            root = merkle.node_hash(stack.pop()[1], root)
            height += 1
        stack.append((height, root))
    return merkle.MerkleAccumulator.restore(size, [root for _, root in stack]).root()


# --- joining the parts --------------------------------------------------------------------


@dataclass
class _LedgerResult:
    files: list[_FileCheck]
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


def _position(problem: Problem) -> tuple[int, int, int, int]:
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


def _link(ctx: _Context, parts: list[_PartResult], result: _LedgerResult) -> Problem | None:
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
        elif not _HEX64.fullmatch(part.first_prev):  # a run starts: its link must be a hash
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


def _erasure_problem(parts: list[_PartResult]) -> Problem | None:
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
    return min(found, key=_position) if found else None


def _join(ctx: _Context, parts: list[_PartResult], result: _LedgerResult) -> None:
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
    result.problem = min(found, key=_position) if found else None


def _tree_problem(
    ctx: _Context, result: _LedgerResult, parts: list[_PartResult], bundle: zipfile.ZipFile
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
        subtrees = [subtree for part in parts for subtree in part.subtrees]
        if _root(subtrees) != anchor.root_hash:
            return Problem(
                Failure.INCLUSION,
                "the events do not give the root of the signed head: the log is not the one "
                "that was signed",
                layout.events_part(1) if len(parts) == 1 else "ledger/events-*.jsonl",
            )
        if ctx.pin_size and 0 < ctx.pin_size < count:
            result.root_at_pin = _root_at(ctx.pin_size, parts)
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
                raise _Stop(Problem(Failure.INCLUSION, "not a proof line", layout.PROOFS,
                                    count)) from None  # fmt: skip
        return count

    proofs_file = _read_member(bundle, ctx, layout.PROOFS, read_proofs)
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
            and all(isinstance(p, str) and _HEX64.fullmatch(p) for p in path)
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


def _root_at(size: int, parts: list[_PartResult]) -> bytes:
    """Full scope: the root of the first `size` events, for a pin: the subtrees below `size`,
    and the leaves of the one it cuts (from the part that returned its hashes)."""
    below = [s for part in parts for s in part.subtrees if s[0] + (1 << s[1]) <= size]
    done = below[-1][0] + (1 << below[-1][1]) if below else 0
    if done < size:
        holder = next(p for p in parts if p.hashes)
        offset = (holder.first_seq or 1) - 1
        hashes = holder.hashes[(done - offset) * 32 : (size - offset) * 32]
        below += _subtrees(done, [hashes[i : i + 32] for i in range(0, len(hashes), 32)])
    return _root(below)


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


def _check_ledger(
    ctx: _Context, parts: list[_Part], plain: list[str], workers: int, bundle: zipfile.ZipFile
) -> tuple[_LedgerResult, list[_FileCheck]]:
    """Every part and every other file, by `workers` processes (0: this one); then the
    parts joined, the tree, the heads."""
    result = _LedgerResult(files=[])
    if workers:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_start_method())
        try:
            # The largest first (the bytes to read are about what a unit costs), so that the
            # workers run out of work at about the same time.
            jobs: list[tuple[int, Any, tuple[Any, ...]]] = [
                (_listed_bytes(ctx, [*_names(part)]), _check_part, (part,)) for part in parts
            ]
            groups = _plain_groups(ctx, plain)
            jobs += [(_listed_bytes(ctx, group), _check_plain, (ctx, group)) for group in groups]
            largest_first = sorted(range(len(jobs)), key=lambda i: -jobs[i][0])
            futures: dict[int, Future[Any]] = {
                i: pool.submit(jobs[i][1], *jobs[i][2]) for i in largest_first
            }
            heads_file = _read_member(
                bundle, ctx, layout.HEADS, lambda lines: _check_heads(ctx, result, lines)
            )
            answers = [futures[i].result() for i in range(len(jobs))]
            found = answers[: len(parts)]
            plain_checks = [check for checks in answers[len(parts) :] for check in checks]
        finally:
            # With every answer in, there is nothing to wait for: the workers end on their own
            # (a quarter of a second of interpreter teardown, measured, for a million records).
            pool.shutdown(wait=False, cancel_futures=True)
    else:
        found = [_check_part(part, bundle) for part in parts]
        plain_checks = _check_plain(ctx, plain, bundle)
        heads_file = _read_member(
            bundle, ctx, layout.HEADS, lambda lines: _check_heads(ctx, result, lines)
        )
    _join(ctx, found, result)
    readable = all(not check.unreadable for check in result.files)
    if result.problem is None and readable:
        result.problem = _tree_problem(ctx, result, found, bundle)
    result.files.append(heads_file)
    return result, plain_checks


def _start_method() -> BaseContext:
    """How worker processes start: forked where this process runs no other Python thread
    (Linux), at once and with nothing to import; else spawned, each importing the program's
    main module again first (over a second for `warden`, whose imports are many)."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return get_context("fork")
    return get_context("spawn")


def _plain_groups(ctx: _Context, names: Sequence[str]) -> list[list[str]]:
    """The other files as units of work: each big one alone, the small ones together."""
    big = [name for name in names if _listed_bytes(ctx, [name]) > _BLOCK * 8]
    small = [name for name in names if name not in big]
    return [[name] for name in big] + ([small] if small else [])


def _names(part: _Part) -> Iterator[str]:
    if part.events is not None:
        yield part.events
    yield part.requests


def _listed_bytes(ctx: _Context, names: Iterable[str]) -> int:
    """The size the manifest gives for these files (what is not a size counts as nothing)."""
    sizes = (ctx.files[name].get("bytes") for name in names)
    return sum(size for size in sizes if type(size) is int and size > 0)


# --- every other file: digest and count -------------------------------------------------


def _check_plain(
    ctx: _Context, names: Sequence[str], opened: zipfile.ZipFile | None = None
) -> list[_FileCheck]:
    """The other files: their digests, and their record counts (lines, Parquet rows)."""
    checks = []
    with _opened(ctx.source, opened) as bundle:
        for name in names:
            if _listed_bytes(ctx, [name]) <= _IN_MEMORY:
                check = _read_small(bundle, ctx, name)
            else:
                check, tail = _read_big(bundle, ctx, name)
                if name.endswith(".parquet") and check.digest_ok:
                    # The row count is in the footer: from the end already read, if it is
                    # there (zipfile's reader would read the whole file again to seek to it).
                    if _footer_within(tail):
                        check.lines = _parquet_rows(tail)
                    else:
                        with bundle.open(name) as member:
                            check.lines = _parquet_rows(member)
            checks.append(check)
    return checks


_IN_MEMORY = 32 * 1024 * 1024


def _read_big(bundle: zipfile.ZipFile, ctx: _Context, name: str) -> tuple[_FileCheck, bytes]:
    """A big file's digest and lines, a block at a time (its lines are not looked at), and
    its last bytes (two blocks)."""
    check = _FileCheck(name)
    digest, size, before, last = _sha256(), 0, b"", b""
    try:
        for block in _inflated(ctx.source, bundle.getinfo(name)):
            digest.update(block)
            size += len(block)
            check.lines += block.count(b"\n")
            before, last = last, block
    except _READ_ERRORS as error:
        check.unreadable = str(error) or type(error).__name__
        check.digest_ok = False
        return check, b""
    check.lines += bool(last) and not last.endswith(b"\n")  # a last line without newline
    check.digest_ok = _digest_ok(ctx.files[name], digest, size)
    return check, before + last


def _footer_within(tail: bytes) -> bool:
    """Whether a Parquet file's footer (its metadata, its length, `PAR1`) ends `tail`."""
    return len(tail) >= 8 and int.from_bytes(tail[-8:-4], "little") + 8 <= len(tail)


def _read_small(bundle: zipfile.ZipFile, ctx: _Context, name: str) -> _FileCheck:
    check = _FileCheck(name)
    try:
        data = bundle.read(name)
    except _READ_ERRORS as error:
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
        if not isinstance(manifest, dict):
            raise ValueError(f"not a {layout.FORMAT} manifest")
        if manifest.get("format") != layout.FORMAT:
            raise ValueError(f"not a {layout.FORMAT} manifest (its format is "
                             f"{manifest.get('format')!r})")  # fmt: skip
        for part in ("scope", "ledger", "counts", "files"):
            if not isinstance(manifest.get(part), dict):
                raise ValueError(f"the manifest has no {part}")
        if not all(isinstance(entry, dict) for entry in manifest["files"].values()):
            raise ValueError("the manifest lists a file without its digest and size")
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
        if layout.HEADS not in files:
            raise _Stop(Problem(Failure.FILE_DIGEST, f"the bundle has no {layout.HEADS}"))
        events_parts, requests_parts = _part_names(files)
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
    parts = [
        _Part(
            source=source,
            number=number,
            events=events_parts[number - 1] if number <= len(events_parts) else None,
            requests=requests,
            project=verdict.project,
            full=verdict.mode == layout.FULL,
            expected={
                name: files[name]
                for name in [*events_parts[number - 1 : number], requests]
            },
            pin_size=ctx.pin_size,
        )
        for number, requests in enumerate(requests_parts, 1)
    ]
    special = {*events_parts, *requests_parts, layout.PROOFS, layout.HEADS}
    plain = sorted(set(files) - special)
    cores = os.cpu_count() or 1
    parallel = workers if workers is not None else (
        min(cores, 8) if bundle_bytes > PARALLEL_BYTES and cores > 1 else 0
    )
    parallel = min(parallel, len(parts) + len(plain)) if isinstance(source, str) else 0
    verdict.parts, verdict.workers = len(events_parts), parallel
    with _open(source) as opened:
        ledger_result, plain_checks = _check_ledger(ctx, parts, plain, parallel, opened)
    _conclude(ctx, manifest, pin, ledger_result, plain_checks, verdict)


def _part_names(files: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The parts of the ledger and of the request records, in order: each kind numbered 1,
    2, 3 ... without a gap, at least one of each, and a requests part for each events part."""
    found: dict[str, set[int]] = {"events": set(), "requests": set()}
    for name in files:
        part = layout.part_number(name)
        if part is not None:
            found[part[0]].add(part[1])
    events = max(len(found["events"]), 1)
    requests = max(len(found["requests"]), events)
    for kind, count, name_of in (
        ("events", events, layout.events_part),
        ("requests", requests, layout.requests_part),
    ):
        missing = sorted(set(range(1, count + 1)) - found[kind])
        if missing:  # as many numbers as parts, or more: any gap leaves one out
            raise _Stop(Problem(Failure.FILE_DIGEST, f"the bundle has no {name_of(missing[0])} "
                                f"(its {kind} parts are numbered 1, 2, 3 ...)"))  # fmt: skip
    return (
        [layout.events_part(n) for n in range(1, events + 1)],
        [layout.requests_part(n) for n in range(1, requests + 1)],
    )


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
