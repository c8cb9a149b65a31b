"""Writing table rows as JSON Lines and Parquet at once, hashing the files as they grow.

A `TableSink` takes rows of one table (mappings of column name to the value SQLAlchemy
returned) and writes each as one JSON object per line and, in row groups, as Parquet:

| column type       | JSON Lines                          | Parquet                  |
|-------------------|-------------------------------------|--------------------------|
| int, float, str   | as is                               | int64, float64, string   |
| bool              | as is                               | bool                     |
| datetime          | `2025-01-02T03:04:05.678901Z`       | timestamp[us, UTC]       |
| bytes             | lower-case hex                      | string (hex)             |
| JSON              | nested                              | string (the JSON text)   |

Rows are streamed: memory holds one row group per table, never the whole export. A table
whose JSON Lines are split into numbered parts (the request records, one part per part of the
ledger) takes a `part_name`; `next_part` closes one part and starts the next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, LargeBinary, Text, cast

from app.audit.chain import format_time
from app.audit.layout import PARQUET_ROW_GROUP, records_path

_JSON_LINE = orjson.OPT_APPEND_NEWLINE


@dataclass(frozen=True)
class FileInfo:
    """What the manifest says of one file: its digest, size and, for record files, rows."""

    path: str
    sha256: str
    bytes: int
    records: int | None = None

    def to_json(self) -> dict[str, Any]:
        info: dict[str, Any] = {"sha256": self.sha256, "bytes": self.bytes}
        if self.records is not None:
            info["records"] = self.records
        return info


class HashingWriter:
    """A binary file that keeps the SHA-256 and size of what was written to it."""

    def __init__(self, root: Path, relative: str) -> None:
        self.relative = relative
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = target.open("wb", buffering=1 << 20)
        self._digest = hashlib.sha256()
        self._size = 0
        self.lines = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._digest.update(data)
        self._size += len(data)

    def write_line(self, line: bytes, *, ended: bool = False) -> None:
        """`line` and a newline (`ended`: `line` ends with its newline already)."""
        self.write(line if ended else line + b"\n")
        self.lines += 1

    def close(self, records: int | None = None) -> FileInfo:
        self._file.close()
        return FileInfo(self.relative, self._digest.hexdigest(), self._size, records)


class PartWriter:
    """Lines written to numbered files, `part_name(1)`, `part_name(2)`, ..., each hashed.

    The first part is opened at once, so there is always one, maybe empty.
    """

    def __init__(self, root: Path, part_name: Callable[[int], str]) -> None:
        self._root = root
        self._part_name = part_name
        self._closed: list[FileInfo] = []
        self._current = HashingWriter(root, part_name(1))

    @property
    def lines(self) -> int:
        """Lines in the current part."""
        return self._current.lines

    @property
    def parts(self) -> int:
        return len(self._closed) + 1

    def write_line(self, line: bytes, *, ended: bool = False) -> None:
        self._current.write_line(line, ended=ended)

    def next_part(self) -> None:
        self._closed.append(self._current.close(self._current.lines))
        self._current = HashingWriter(self._root, self._part_name(self.parts))

    def close(self) -> list[FileInfo]:
        return [*self._closed, self._current.close(self._current.lines)]


def hash_file(root: Path, relative: str, records: int | None = None) -> FileInfo:
    digest = hashlib.sha256()
    size = 0
    with (root / relative).open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return FileInfo(relative, digest.hexdigest(), size, records)


# How each kind of column is written: (to JSON, to the Parquet column, Parquet type).
_Convert = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def utc_text(moment: datetime) -> str:
    """`chain.format_time`, faster for the UTC datetimes the database hands back."""
    if moment.tzinfo is UTC:
        return moment.isoformat(timespec="microseconds")[:26] + "Z"
    return format_time(moment)


def _time(value: Any) -> Any:
    return utc_text(value) if isinstance(value, datetime) else value


def _hex(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes | bytearray | memoryview) else value


def _json_text(value: Any) -> Any:
    return None if value is None else orjson.dumps(value).decode()


def _fragment(value: Any) -> Any:
    return None if value is None else orjson.Fragment(value)


_KINDS: dict[str, tuple[_Convert, _Convert, pa.DataType]] = {
    "int": (_same, _same, pa.int64()),
    "float": (_same, _same, pa.float64()),
    "bool": (_same, _same, pa.bool_()),
    "str": (_same, _same, pa.string()),
    "time": (_time, _same, pa.timestamp("us", tz="UTC")),
    "bytes": (_hex, _hex, pa.string()),
    "json": (_same, _json_text, pa.string()),
    # JSON already encoded (text from the database, see `selected`; or bytes): written into
    # the line as it is (Arrow takes UTF-8 bytes for a string column).
    "rawjson": (_fragment, _same, pa.string()),
}


def column_kind(column: Any) -> str:
    """The `_KINDS` entry for a SQLAlchemy column."""
    kind = column.type
    if isinstance(kind, JSON):
        return "json"
    if isinstance(kind, LargeBinary):
        return "bytes"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, Integer):
        return "int"
    if isinstance(kind, Float):
        return "float"
    if isinstance(kind, DateTime) or isinstance(getattr(kind, "impl", None), DateTime):
        return "time"
    return "str"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str


def table_columns(model: Any, *exclude: str, raw_json: bool = False) -> list[Column]:
    """The exported columns of a model: all but the row id, the project and `exclude`.

    With `raw_json`, JSON columns are read as the database's text (see `selected`).
    """
    skip = {"id", "project_id", *exclude}
    columns = []
    for c in model.__table__.columns:
        if c.name not in skip:
            kind = column_kind(c)
            columns.append(Column(c.name, "rawjson" if raw_json and kind == "json" else kind))
    return columns


def selected(model: Any, columns: Sequence[Column]) -> list[Any]:
    """What to SELECT for `columns`: `rawjson` ones cast to text, so they are never parsed."""
    table = model.__table__
    return [
        cast(table.c[c.name], Text).label(c.name) if c.kind == "rawjson" else table.c[c.name]
        for c in columns
    ]


class TableSink:
    """`records/<table>.jsonl` and `records/<table>.parquet`, written row by row."""

    def __init__(
        self,
        root: Path,
        table: str,
        columns: Sequence[Column],
        part_name: Callable[[int], str] | None = None,
    ) -> None:
        self.root = root
        self.table = table
        self.columns = list(columns)
        self._names = [c.name for c in self.columns]
        # Only the columns whose value changes on the way are touched per row.
        self._to_json = [
            (i, _KINDS[c.kind][0]) for i, c in enumerate(self.columns)
            if _KINDS[c.kind][0] is not _same
        ]  # fmt: skip
        self._to_parquet = [
            (i, _KINDS[c.kind][1]) for i, c in enumerate(self.columns)
            if _KINDS[c.kind][1] is not _same
        ]  # fmt: skip
        self._schema = pa.schema([(c.name, _KINDS[c.kind][2]) for c in self.columns])
        self._jsonl: HashingWriter | PartWriter = (
            HashingWriter(root, records_path(table))
            if part_name is None
            else PartWriter(root, part_name)
        )
        self._parquet_path = records_path(table, "parquet")
        (root / self._parquet_path).parent.mkdir(parents=True, exist_ok=True)
        self._parquet = pq.ParquetWriter(
            str(root / self._parquet_path), self._schema, compression="zstd"
        )
        self._rows: list[Sequence[Any]] = []
        self.count = 0

    def add(self, row: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
        """Write one row (values in column order, or a mapping by column name); returns it
        as written to JSON Lines."""
        values = [row[n] for n in self._names] if isinstance(row, Mapping) else list(row)
        self._rows.append(tuple(values))
        for i, convert in self._to_json:
            values[i] = convert(values[i])
        record = dict(zip(self._names, values, strict=True))
        self._jsonl.write_line(orjson.dumps(record, option=_JSON_LINE), ended=True)
        self.count += 1
        if len(self._rows) >= PARQUET_ROW_GROUP:
            self._flush()
        return record

    def next_part(self) -> None:
        """Close this part of the JSON Lines and start the next (`part_name` only)."""
        if not isinstance(self._jsonl, PartWriter):
            raise TypeError(f"records/{self.table}.jsonl is one file, not parts")
        self._jsonl.next_part()

    def _flush(self) -> None:
        if not self._rows:
            return
        columns: list[Any] = list(zip(*self._rows, strict=True))
        for i, convert in self._to_parquet:
            columns[i] = [convert(v) for v in columns[i]]
        arrays = [
            pa.array(values, type=field.type)
            for values, field in zip(columns, self._schema, strict=True)
        ]
        self._parquet.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        self._rows = []

    def close(self) -> list[FileInfo]:
        self._flush()
        self._parquet.close()
        jsonl = (
            self._jsonl.close()
            if isinstance(self._jsonl, PartWriter)
            else [self._jsonl.close(self.count)]
        )
        return [*jsonl, hash_file(self.root, self._parquet_path, self.count)]
