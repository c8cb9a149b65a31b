"""PostgreSQL's bulk write paths for ingest: COPY through a staging table, and pipelined
`executemany` of INSERT ... ON CONFLICT DO NOTHING straight through psycopg.

`copy_insert_ignore` is what `executemany` of INSERT ... ON CONFLICT DO NOTHING does, at COPY
speed: the rows stream into a temporary table with the target's column types (no index, no
constraint, no WAL), then one statement moves them into the target in key order, skipping the
keys stored already, and says how many were new. It is for the large tables (spans, states).

`insert_ignore_rows` is for the small ones (a few dozen rows a batch: requests, their models,
decisions...): one INSERT ... ON CONFLICT DO NOTHING per row, sent by psycopg's `executemany`
in one pipeline (one round trip, one statement prepared once), each value bound by the same
SQLAlchemy type processors and column defaults as a Core insert would, so the stored rows
are the same.

Everything happens in the caller's transaction, so a batch is still all or nothing.

The staging tables (`STAGED_TABLES`) are made once per database session, when the pool first
hands the connection out with the schema in place (`prepare_staging`, a pool "checkout"
event set by app/store/engine.py), and committed there, outside any batch, so no later
rollback can drop them; each commit empties them (`ON COMMIT DELETE ROWS`). Making them per
batch would cost a statement and a catalog lookup every batch. So each table is staged at
most once per transaction. PostgreSQL only; SQLite keeps `executemany`.

    with write_transaction(engine) as conn:
        new = copy_insert_ignore(conn, "spans", SPAN_COLUMNS, SPAN_KEY, rows)
        traces = insert_ignore_rows(conn, REQUESTS, ("project_id", "trace_id"), requests,
                                    returning="trace_id")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors
from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

# The tables written through COPY, each with a staging table per database session.
STAGED_TABLES = ("spans", "world_model_states")
# Set in a pooled connection's `info` once its staging tables are committed. The pool clears
# `info` whenever it replaces the database connection, so the mark never outlives its tables.
_STAGED = "warden_staged"


def staging_name(table: str) -> str:
    """The session's staging table for `table` (temporary, so private to the session)."""
    return f"warden_stage_{table}"


def prepare_staging(dbapi_connection: Any, record: ConnectionPoolEntry, *_: Any) -> None:
    """Pool "checkout" listener: make the session's staging tables and commit them, once.

    Before the schema exists (a fresh database being migrated) this does nothing, and
    `copy_insert_ignore` stages within its own transaction until a later checkout succeeds.
    """
    if record.info.get(_STAGED):
        return
    connection: psycopg.Connection[Any] = dbapi_connection
    try:
        with connection.cursor() as cursor:
            for table in STAGED_TABLES:
                cursor.execute(_create_stage(table))
        connection.commit()
    except errors.UndefinedTable:
        connection.rollback()
        return
    record.info[_STAGED] = True


def copy_insert_ignore(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> int:
    """COPY `rows` (tuples in `columns` order, text-format values: JSON as text, bytes for
    bytea) into `table` (one of `STAGED_TABLES`), skipping those whose `key` is stored
    already; returns how many were new. Rows are inserted in `key` order, so concurrent
    batches lock keys in one order. Call it once per `table` per transaction: the staging
    table empties only at commit."""
    if not rows:
        return 0
    names = ", ".join(columns)
    # psycopg's own connection, in the same transaction.
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    stage = staging_name(table)
    if not conn.connection.info.get(_STAGED):
        # Only on a connection checked out before the schema existed: made in this
        # transaction, so it goes if the transaction rolls back (hence IF NOT EXISTS).
        conn.exec_driver_sql(_create_stage(table))
    sql = f"COPY {stage} ({names}) FROM STDIN"
    with _as_sqlalchemy(sql), driver.cursor() as cursor, cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)
    order = ", ".join(key)
    result = conn.exec_driver_sql(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} ORDER BY {order} "
        f"ON CONFLICT ({order}) DO NOTHING"
    )
    return int(result.rowcount)


class AlreadyStored(Exception):
    """A row `copy_insert` was to write is stored already (a resend, or another transaction
    storing the same row first). The caller's transaction is aborted: write the batch again
    through `copy_insert_ignore`."""


def copy_insert(
    conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """COPY `rows` straight into `table`, expecting every one to be new (the common case: a
    batch is sent once). A row stored already, or stored meanwhile by another transaction,
    makes the COPY fail with a unique violation (`AlreadyStored`), which aborts the caller's
    transaction: nothing is skipped silently. Returns how many rows were written."""
    if not rows:
        return 0
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    names = ", ".join(columns)
    sql = f"COPY {table} ({names}) FROM STDIN"
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    except errors.UniqueViolation as exc:
        raise AlreadyStored(str(exc).splitlines()[0]) from exc
    except psycopg.Error as exc:
        raise _sqlalchemy_error(sql, exc) from exc
    return len(rows)


def insert_ignore_rows(
    conn: Connection,
    table: Table,
    key: Sequence[str],
    rows: Sequence[dict[str, Any]],
    returning: str | None = None,
) -> list[Any]:
    """INSERT ... ON CONFLICT (`key`) DO NOTHING of `rows` (dicts with the same keys, in the
    order to insert them) through psycopg's pipelined `executemany`; with `returning`, that
    column of the rows that were new, in order. Values go through the columns' SQLAlchemy
    bind processors, and columns missing from the rows get their Python-side defaults."""
    if not rows:
        return []
    names, params = _bound(conn, table, rows)
    sql = (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})"
        f" ON CONFLICT ({', '.join(key)}) DO NOTHING"
    )
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    with _as_sqlalchemy(sql), driver.cursor() as cursor:
        if returning is None:
            cursor.executemany(sql, params)
            return []
        cursor.executemany(f"{sql} RETURNING {returning}", params, returning=True)
        new: list[Any] = []
        while True:
            new.extend(row[0] for row in cursor.fetchall())
            if not cursor.nextset():
                return new


def copy_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> int:
    """`copy_insert` of `rows` given as dicts, bound as `insert_ignore_rows` binds them: for
    the typed rows of spans `copy_insert` wrote as new (their keys hold the span's)."""
    if not rows:
        return 0
    names, params = _bound(conn, table, rows)
    return copy_insert(conn, table.name, names, params)


def _bound(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and the rows' values as the driver takes them: through the columns'
    SQLAlchemy bind processors, with Python-side defaults for the columns the rows lack."""
    dialect = conn.dialect
    given = list(rows[0])
    defaults = [
        c for c in table.columns
        if c.name not in given and c.default is not None and not c.primary_key
    ]  # fmt: skip
    if any(not (c.default.is_scalar or c.default.is_callable) for c in defaults):  # type: ignore[union-attr]
        raise ValueError(f"{table.name}: a SQL-expression default needs SQLAlchemy's insert")
    columns = [table.c[name] for name in given] + defaults
    processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    params = []
    for row in rows:
        values = [row[name] for name in given]
        for column in defaults:
            default: Any = column.default
            values.append(default.arg(None) if default.is_callable else default.arg)
        params.append(
            tuple(v if p is None else p(v) for v, p in zip(values, processors, strict=True))
        )
    return [c.name for c in columns], params


@contextlib.contextmanager
def _as_sqlalchemy(sql: str) -> Iterator[None]:
    """Driver errors as SQLAlchemy raises them (OperationalError, IntegrityError...), so
    they meet the same handling as every other statement's: a lost database is a 503 to
    retry, not an internal error."""
    try:
        yield
    except psycopg.Error as exc:
        raise _sqlalchemy_error(sql, exc) from exc


def _sqlalchemy_error(sql: str, exc: psycopg.Error) -> DBAPIError:
    return DBAPIError.instance(sql, None, exc, psycopg.Error)  # type: ignore[return-value]


def _create_stage(table: str) -> str:
    # The target's column types, none of its constraints or defaults (COPY leaves the id
    # column empty: the target's sequence numbers the rows).
    return (
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging_name(table)} ON COMMIT DELETE ROWS "
        f"AS SELECT * FROM {table} WITH NO DATA"
    )
