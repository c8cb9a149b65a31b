"""Reading a bundle's zip members: the zip opened, and a member inflated a block at a time.

`inflated` is not zipfile's reader: zipfile computes zip's CRC-32 of every byte and copies
its buffers, a sixth of a verifier's time, when the SHA-256 the signed manifest gives for the
member covers every byte already. It reads the member from its own file handle, so worker
processes can each read their own members of one file at once. A member that does not
inflate whole is unreadable (`READ_ERRORS`).
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

# What reading a damaged or cut zip can raise: the member is then unreadable (exit 11).
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError)

# Compressed bytes read at a time: a block of some 300 KB once inflated, small enough that it
# and its lines stay in the CPU's cache while they are worked on. Stored members: `BLOCK`.
INFLATE_IN = 64 * 1024
BLOCK = 256 * 1024
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra field length


def open_bundle(source: str | bytes) -> zipfile.ZipFile:
    """The zip at a path, or of these bytes."""
    return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)


def opened(source: str | bytes, bundle: zipfile.ZipFile | None) -> Any:
    """The bundle already open in this process, or the bundle opened anew (a worker)."""
    return contextlib.nullcontext(bundle) if bundle is not None else open_bundle(source)


def inflated(source: str | bytes, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A member's bytes, a block at a time, read from its own file handle (see the module
    docstring). `INFLATE_IN` and `BLOCK` are read at each call."""
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
            data = file.read(min(left, INFLATE_IN if inflate is not None else BLOCK))
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
