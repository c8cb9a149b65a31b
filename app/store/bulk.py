"""PostgreSQL's bulk write path: COPY into a staging table, then one INSERT ... SELECT.

`copy_insert_ignore` is what `executemany` of INSERT ... ON CONFLICT DO NOTHING does, at COPY
speed: the rows stream into a temporary table with the target's column types (no index, no
constraint, no WAL), then one statement moves them into the target in key order, skipping the
keys stored already, and says how many were new. Everything happens in the caller's
transaction, so a batch is still all or nothing.

The staging tables are made once per database session and emptied by every commit (`ON COMMIT
DELETE ROWS`) rather than made and dropped per batch, which would write the system catalogs
every transaction. So each table is staged at most once per transaction. PostgreSQL only;
SQLite keeps `executemany`.

    with write_transaction(engine) as conn:
        new = copy_insert_ignore(conn, "spans", SPAN_COLUMNS, SPAN_KEY, rows)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import Connection


def staging_name(table: str) -> str:
    """The session's staging table for `table` (temporary, so private to the session)."""
    return f"warden_stage_{table}"


def copy_insert_ignore(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> int:
    """COPY `rows` (tuples in `columns` order, text-format values: JSON as text, bytes for
    bytea) into `table`, skipping those whose `key` is stored already; returns how many were
    new. Rows are inserted in `key` order, so concurrent batches lock keys in one order.
    Call it once per `table` per transaction: the staging table empties only at commit."""
    if not rows:
        return 0
    stage = _staging_table(conn, table, columns)
    names = ", ".join(columns)
    # psycopg's own connection, in the same transaction.
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    with driver.cursor() as cursor, cursor.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    order = ", ".join(key)
    result = conn.exec_driver_sql(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} ORDER BY {order} "
        f"ON CONFLICT ({order}) DO NOTHING"
    )
    return int(result.rowcount)


def _staging_table(conn: Connection, table: str, columns: Sequence[str]) -> str:
    stage = staging_name(table)
    # Asked every batch rather than remembered per session: a remembered table would be
    # wrong after the transaction that made it rolled back. The target's column types, none
    # of its constraints (the id column is left out: the target's sequence numbers the rows).
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
        f"SELECT {', '.join(columns)} FROM {table} WITH NO DATA"
    )
    return stage
