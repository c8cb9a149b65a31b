"""The database engine: one per process, configured for safe concurrent writers.

SQLite runs in WAL mode with a busy timeout, and write transactions open with
`BEGIN IMMEDIATE` so two writers queue instead of one failing with "database is locked" when
it upgrades a read lock. Warden's own writers also queue on a lock file beside the database
first (`SqliteWriteLock`): SQLite's busy handler polls with sleeps of up to 100 ms, while a
kernel file lock hands the database to the next writer the moment the last one commits, which
is what lets several server processes share one SQLite file at full speed. PostgreSQL needs
nothing special here: ingest orders its inserts by key so concurrent batches cannot deadlock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from app.config import Settings

_WRITE_OPTION = "warden_write"
_LOCK_OPTION = "warden_write_lock"


class SqliteWriteLock:
    """Serialises writers to one SQLite file across threads and processes.

    A thread lock orders the threads of this process; an `flock` on `<database>.writelock`
    orders processes. The file is opened lazily per process, so forked workers get their own.
    """

    def __init__(self, database: str) -> None:
        self.path = f"{database}.writelock"
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._fd is None or self._pid != os.getpid():
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_db_engine(settings: Settings, url: str | None = None) -> Engine:
    """Build the engine for `url` (default: the settings' database URL)."""
    url = url or settings.resolved_database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )


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

    if database and database != ":memory:":
        return engine.execution_options(**{_LOCK_OPTION: SqliteWriteLock(database)})
    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that takes the write lock up front; commits on success.

    >>> with write_transaction(engine) as conn:
    ...     conn.execute(insert(Project).values(name="demo"))
    """
    lock = engine.get_execution_options().get(_LOCK_OPTION) or contextlib.nullcontext()
    with lock, engine.connect() as conn:
        conn = conn.execution_options(**{_WRITE_OPTION: True})
        with conn.begin():
            yield conn


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for reads; its transaction is rolled back on exit."""
    with engine.connect() as conn:
        yield conn
