"""The database engine: one per process, configured for safe concurrent writers.

SQLite runs in WAL mode with a busy timeout, and write transactions open with
`BEGIN IMMEDIATE` so two writers queue instead of one failing with "database is locked" when
it upgrades a read lock. Warden's own writers also queue on a lock file beside the database
first (`<database>.writelock`, see `write_transaction`): SQLite's busy handler polls with
sleeps of up to 100 ms, while a kernel file lock hands the database to the next writer the
moment the last one commits, which is what lets several server processes share one SQLite
file at full speed. PostgreSQL needs nothing special for concurrency (ingest orders its
inserts by key so concurrent batches cannot deadlock); each of its sessions gets ingest's
COPY staging tables when the pool first hands it out (app/store/bulk.py).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from app.config import Settings
from app.store.bulk import prepare_staging

# Set on the connection `write_transaction` opens, for the "begin" event to read.
_WRITE_OPTION = "warden_write"


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_db_engine(settings: Settings, url: str | None = None) -> Engine:
    """Build the engine for `url` (default: the settings' database URL)."""
    url = url or settings.resolved_database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    engine = create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )
    # Ingest's COPY staging tables, made once per session before it serves any transaction.
    event.listen(engine, "checkout", prepare_staging)
    return engine


def _sqlite_engine(url: str, settings: Settings) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={
            "check_same_thread": False,
            "timeout": settings.sqlite_busy_timeout_ms / 1000,
        },
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={settings.sqlite_synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={settings.sqlite_busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that takes the write lock up front; commits on success.

    On a SQLite file: the lock file beside the database (`write_lock_path`), then
    `BEGIN IMMEDIATE`; on PostgreSQL, a plain transaction.

    >>> with write_transaction(engine) as conn:
    ...     conn.execute(insert(Project).values(name="demo"))
    """
    with _write_lock(engine), engine.connect() as conn:
        conn = conn.execution_options(**{_WRITE_OPTION: True})
        with conn.begin():
            yield conn


def write_lock_path(engine: Engine) -> str | None:
    """The lock file Warden's writers to this SQLite database queue on (None: no file to
    share, on PostgreSQL or an in-memory database)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return f"{database}.writelock"


@contextmanager
def _write_lock(engine: Engine) -> Iterator[None]:
    """Holds `write_lock_path(engine)` exclusively for the block.

    An `flock` belongs to the open file description, and each call opens the file anew, so
    two threads of one process exclude each other exactly as two processes do; nothing is
    kept between transactions. The explicit unlock matters where a fork copied the
    descriptor meanwhile: closing ours alone would leave the lock to the copy.
    """
    path = write_lock_path(engine)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for reads; its transaction is rolled back on exit."""
    with engine.connect() as conn:
        yield conn
