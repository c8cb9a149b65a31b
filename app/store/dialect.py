"""Where SQLite and PostgreSQL differ for Warden's SQL, answered in one place.

- `insert_on_conflict`: INSERT ... ON CONFLICT (key) DO NOTHING, or DO UPDATE SET ..., for
  the connection's dialect. Both databases speak the same clause; SQLAlchemy builds it only
  from each dialect's own `insert`.
- `DriverSQL`, `driver_insert_on_conflict`, `placeholder`, `driver_datetime`: SQL text and
  values for the DB-API driver itself (`Connection.exec_driver_sql`), which the hot paths
  (ingest's spans and states, the ledger's events) use to skip SQLAlchemy's compiler. The
  drivers differ in their placeholder (sqlite3 `?`, psycopg `%s`), so fixed statements are
  written once for each and picked per call.
- `is_postgresql`: the rest (row locks, JSON operators, how long a commit takes to show).
- `consistent_snapshot`: one snapshot for every statement of a long read.

    with write_transaction(engine) as conn:
        conn.execute(insert_on_conflict(conn, KEYS, ["project_id", "subject"]), rows)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import KeyedColumnElement

Bind = Connection | Engine
Excluded = ReadOnlyColumnCollection[str, KeyedColumnElement[Any]]

# The DB-API paramstyles of the drivers Warden runs on, and their positional placeholder.
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
# How SQLAlchemy stores a DateTime in SQLite (its default storage format), in UTC.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def is_postgresql(bind: Bind) -> bool:
    """True on PostgreSQL, False on SQLite (the two databases Warden runs on)."""
    return bind.dialect.name == "postgresql"


def insert_on_conflict(
    bind: Bind,
    table: Table,
    unique_by: Sequence[str],
    *,
    set_: Callable[[Excluded], Mapping[str, Any]] | None = None,
) -> postgresql.Insert | sqlite.Insert:
    """INSERT into `table` that skips rows whose `unique_by` key is stored already, or,
    with `set_`, updates them: `set_` gets the proposed row's columns (`excluded`) and
    returns the SET clause.

    >>> stmt = insert_on_conflict(conn, MODELS, ["project_id", "name", "version"],
    ...                           set_=lambda excluded: {"seen": excluded.seen})
    >>> conn.execute(stmt, rows)
    """
    stmt = postgresql.insert(table) if is_postgresql(bind) else sqlite.insert(table)
    if set_ is None:
        return stmt.on_conflict_do_nothing(index_elements=unique_by)
    return stmt.on_conflict_do_update(index_elements=unique_by, set_=set_(stmt.excluded))


def placeholder(bind: Bind) -> str:
    """The driver's positional placeholder: `?` (sqlite3) or `%s` (psycopg)."""
    style = bind.dialect.paramstyle
    try:
        return _MARKS[style]
    except KeyError:
        raise ValueError(f"DB-API paramstyle {style!r} is not one Warden writes SQL for") from None


@dataclass(frozen=True, slots=True)
class DriverSQL:
    """A statement for `Connection.exec_driver_sql`, written once in each placeholder style.

    >>> LOCK = DriverSQL.of("SELECT seq FROM audit_heads WHERE project_id = {mark}")
    >>> conn.exec_driver_sql(LOCK.text(conn), (project_id,))
    """

    qmark: str
    format: str

    @classmethod
    def of(cls, template: str) -> DriverSQL:
        """`template` with `{mark}` where each parameter goes (and no other `%` or braces)."""
        return cls(template.format(mark="?"), template.format(mark="%s"))

    def text(self, bind: Bind) -> str:
        return self.qmark if placeholder(bind) == "?" else self.format


def driver_insert_on_conflict(
    table: str, columns: Sequence[str], unique_by: Sequence[str]
) -> DriverSQL:
    """INSERT ... ON CONFLICT (key) DO NOTHING for an `executemany` of tuples in `columns`
    order; its rowcount is the number of rows inserted, on both databases."""
    marks = ", ".join(["{mark}"] * len(columns))
    return DriverSQL.of(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
        f"ON CONFLICT ({', '.join(unique_by)}) DO NOTHING"
    )


def driver_datetime(bind: Bind, when: datetime) -> datetime | str:
    """`when` (in UTC) as the driver must get it for a DateTime column to read back as
    SQLAlchemy would have written it: psycopg takes the datetime; SQLite, SQLAlchemy's text."""
    return when if is_postgresql(bind) else when.strftime(_SQLITE_TIME)


def consistent_snapshot(conn: Connection) -> Connection:
    """`conn`, reading one snapshot in all its statements (call it before the first).

    PostgreSQL's READ COMMITTED sees a new snapshot per statement; at REPEATABLE READ the
    first statement's holds to the end. SQLite's read transaction keeps its WAL snapshot
    from the first read on already.
    """
    if is_postgresql(conn):
        conn.execution_options(isolation_level="REPEATABLE READ")
    return conn
