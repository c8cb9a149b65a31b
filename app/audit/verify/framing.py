"""Line framing: a member read through as lines, hashed and counted as it is read, and what
reading it found (`FileCheck`: its digest against the manifest's, its lines, its first
problem).

`Stream` is the framing of the parts (a block at a time, from `members.inflated`): it hands
its reader each block with the lines the block ends, so that a reader can look at the block
once (`fastjcs.doubts`) before its lines, and joins a line split across two blocks without
copying either. `read_member` frames the small files read once (proofs, heads) through
zipfile's reader.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from app.audit.verify.members import READ_ERRORS, inflated
from app.audit.verify.verdict import Problem, Stop

_sha256 = hashlib.sha256


@dataclass
class FileCheck:
    """One member read through: its digest verdict and the first problem of its records."""

    name: str
    lines: int = 0
    digest_ok: bool = True
    problem: Problem | None = None
    unreadable: str = ""


def digest_ok(expected: dict[str, Any], digest: Any, size: int) -> bool:
    """Whether a member's SHA-256 and size are the ones its manifest entry gives."""
    return digest.hexdigest() == expected.get("sha256") and size == expected.get("bytes")


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


def read_member(
    bundle: zipfile.ZipFile,
    name: str,
    expected: dict[str, Any],
    check: Callable[[Iterator[bytes]], int],
) -> FileCheck:
    """Read `name` line by line through `check(lines)` (which returns the lines it read or
    raises `Stop`), then compare its digest and size with `expected`."""
    result = FileCheck(name)
    digest = _sha256()
    size = [0]
    try:
        with bundle.open(name) as member:
            lines = _lines(member, digest, size)
            try:
                result.lines = check(lines)
            except Stop as stop:
                result.problem = stop.problem
            for _ in lines:  # the rest still counts for the digest
                pass
    except READ_ERRORS as error:
        result.unreadable = str(error) or type(error).__name__
        result.digest_ok = False
        return result
    result.digest_ok = digest_ok(expected, digest, size[0])
    return result


class Stream:
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
            for block in inflated(source, bundle.getinfo(self.name)):
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
        except READ_ERRORS as error:
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

    def check(self, expected: dict[str, Any], problem: Problem | None) -> FileCheck:
        """Drained (for the digest), compared with the manifest."""
        for _ in self._pieces:
            pass
        return FileCheck(
            self.name,
            lines=self.lines,
            problem=problem if problem is not None and problem.file == self.name else None,
            unreadable=self.error,
            digest_ok=not self.error and digest_ok(expected, self.digest, self.size),
        )
