"""Leadership of a background job, held where the deployment's database is.

Exactly one process of a deployment runs each periodic job (app/daemons.py): the one that
holds the job's lead here.

- PostgreSQL (`AdvisoryLeadership`): a session-level advisory lock, `pg_try_advisory_lock`
  on a key derived from the job's name, taken on a connection of the job's own (not one of
  the engine's pool, which would hand the session, lock and all, to a request). The leader
  checks before every round that the connection answers and `pg_locks` still shows the
  lock; a lost connection gives the lead up, and the next round tries again on a fresh one.
  The server drops the lock with the session, so a killed process leaves no stale lead.
- A SQLite file (`FileLeadership`): a non-blocking `flock` on `<database>.<job>.leader`,
  beside the database file, so it is one per database, as the deployment is. The kernel
  drops it with its process.
- SQLite in memory (`SoleLeadership`): the database lives and dies with its process, which
  therefore always leads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

LEADER_SUFFIX = ".leader"
# libpq options for the lock's connection: a server gone silent is noticed within about half
# a minute instead of the kernel's two hours, so the lead is not believed held meanwhile.
_CONNECT_ARGS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
_TRY = text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")
# A bigint key shows in pg_locks as its high half (classid), low half (objid), objsubid 1.
_HELD = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND pid = pg_backend_pid() AND classid = CAST(CAST(:high AS bigint) AS oid)"
    " AND objid = CAST(CAST(:low AS bigint) AS oid) AND objsubid = 1)"
)


def advisory_key(job: str) -> int:
    """The job's advisory lock key: stable across processes, machines and releases (Python's
    `hash` is not), as a signed 64-bit integer.

    >>> advisory_key("lineage") == advisory_key("lineage") != advisory_key("exports")
    True
    """
    digest = hashlib.sha256(f"warden.daemon.{job}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLeadership:
    """A job's lead on PostgreSQL: a session-level advisory lock on a connection of its own."""

    def __init__(self, url: URL, job: str) -> None:
        self.job = job
        self.key = advisory_key(job)
        self._url = url
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._leading = False

    def hold(self) -> bool:
        """Take the lead, or check it is still held; False while another session holds it,
        or when the connection was lost (given up: the next call connects afresh)."""
        try:
            conn = self._connection()
            if self._leading:
                unsigned = self.key & 0xFFFF_FFFF_FFFF_FFFF
                params = {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF}
                self._leading = bool(conn.execute(_HELD, params).scalar())
            else:
                self._leading = bool(conn.execute(_TRY, {"key": self.key}).scalar())
        except SQLAlchemyError:
            self._close()
        return self._leading

    def release(self) -> None:
        """Give the lead up and close the connection."""
        if self._conn is not None and self._leading:
            # Should this fail, closing the session below drops the lock anyway.
            with contextlib.suppress(SQLAlchemyError):
                self._conn.execute(_UNLOCK, {"key": self.key})
        self._close()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _connection(self) -> Connection:
        if self._conn is None:
            if self._engine is None:
                # NullPool: closing the connection ends its session, and with it the lock.
                self._engine = create_engine(
                    self._url,
                    poolclass=NullPool,
                    isolation_level="AUTOCOMMIT",
                    connect_args={**_CONNECT_ARGS, "application_name": f"warden {self.job}"},
                )
            self._conn = self._engine.connect()
        return self._conn

    def _close(self) -> None:
        self._leading = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):  # a lost one has nothing to close
                conn.close()


class FileLeadership:
    """A job's lead as a non-blocking `flock` on `path`, held until `release` or the end of
    the process. Another process (or another holder in this one) opening the same file
    cannot take it meanwhile."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def hold(self) -> bool:
        if self._fd is not None:
            return True  # a lock on a file stays held as long as the descriptor is open
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class SoleLeadership:
    """The lead of a job whose database is this process's own (SQLite in memory)."""

    def hold(self) -> bool:
        return True

    def release(self) -> None:
        pass


def for_engine(engine: Engine, job: str) -> AdvisoryLeadership | FileLeadership | SoleLeadership:
    """The lead of `job` among every process that uses `engine`'s database."""
    url = engine.url
    if engine.dialect.name == "postgresql":
        return AdvisoryLeadership(url, job)
    if engine.dialect.name == "sqlite":
        database = url.database
        if not database or database == ":memory:" or url.query.get("mode") == "memory":
            return SoleLeadership()
        return FileLeadership(Path(f"{database}.{job}{LEADER_SUFFIX}"))
    raise ValueError(
        f"background jobs need PostgreSQL or SQLite to agree on a leader, not "
        f"{engine.dialect.name}: set WARDEN_DATABASE_URL to one of them"
    )
