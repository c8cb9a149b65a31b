"""Every other file of a bundle (the other tables' records, Parquet, drift reports, the
report): its digest and size against the manifest's, and its record count (lines, or a
Parquet file's rows, read from its footer).

A file up to `IN_MEMORY` bytes is read whole; a bigger one is streamed a block at a time
(`members.inflated`), its lines counted and never looked at, and its last two blocks kept,
where a Parquet file's footer usually is.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from typing import IO

from app.audit.verify.framing import FileCheck, digest_ok
from app.audit.verify.members import READ_ERRORS, inflated, opened
from app.audit.verify.units import Context, listed_bytes

IN_MEMORY = 32 * 1024 * 1024
_sha256 = hashlib.sha256


def check_plain(
    ctx: Context, names: Sequence[str], open_zip: zipfile.ZipFile | None = None
) -> list[FileCheck]:
    """The other files: their digests, and their record counts (lines, Parquet rows); a
    worker opens the zip itself, this process passes the zip it has open."""
    checks = []
    with opened(ctx.source, open_zip) as bundle:
        for name in names:
            if listed_bytes(ctx, [name]) <= IN_MEMORY:
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


def _read_big(bundle: zipfile.ZipFile, ctx: Context, name: str) -> tuple[FileCheck, bytes]:
    """A big file's digest and lines, a block at a time (its lines are not looked at), and
    its last bytes (two blocks)."""
    check = FileCheck(name)
    digest, size, before, last = _sha256(), 0, b"", b""
    try:
        for block in inflated(ctx.source, bundle.getinfo(name)):
            digest.update(block)
            size += len(block)
            check.lines += block.count(b"\n")
            before, last = last, block
    except READ_ERRORS as error:
        check.unreadable = str(error) or type(error).__name__
        check.digest_ok = False
        return check, b""
    check.lines += bool(last) and not last.endswith(b"\n")  # a last line without newline
    check.digest_ok = digest_ok(ctx.files[name], digest, size)
    return check, before + last


def _footer_within(tail: bytes) -> bool:
    """Whether a Parquet file's footer (its metadata, its length, `PAR1`) ends `tail`."""
    return len(tail) >= 8 and int.from_bytes(tail[-8:-4], "little") + 8 <= len(tail)


def _read_small(bundle: zipfile.ZipFile, ctx: Context, name: str) -> FileCheck:
    check = FileCheck(name)
    try:
        data = bundle.read(name)
    except READ_ERRORS as error:
        check.unreadable = str(error) or type(error).__name__
        check.digest_ok = False
        return check
    expected = ctx.files[name]
    check.digest_ok = _sha256(data).hexdigest() == expected.get("sha256") and len(
        data
    ) == expected.get("bytes")
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
