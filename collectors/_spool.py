"""The on-disk spool: export payloads that could not be delivered yet, kept durably.

A SQLite file in WAL mode with `synchronous=FULL`: a payload is on disk when `put` returns,
and a write torn by a crash is rolled back by SQLite's journal, never read back half-written.
Each payload also carries its SHA-256, checked before it is sent again, so a damaged page is
skipped (and counted) rather than replayed as garbage.

Several processes may share one spool (a pre-forking server, a restarted process): a process
claims rows with a lease before sending them, so no row is sent by two processes at once, and
the rows of a process that died are claimed again once its lease runs out.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("warden.collectors")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    path TEXT NOT NULL,
    payload BLOB NOT NULL,
    digest BLOB NOT NULL,
    spans INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_by INTEGER,
    claimed_until REAL,
    rejected TEXT
);
CREATE INDEX IF NOT EXISTS spool_pending ON spool (rejected, claimed_until, id);
"""


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    id: int
    path: str
    payload: bytes
    spans: int
    attempts: int


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "spool.db"
        self.max_bytes = max_bytes
        self.corrupt = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._bytes = self._pending_bytes()
        self._full_logged = False

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _pending_bytes(self) -> int:
        row = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM spool WHERE rejected IS NULL"
        ).fetchone()
        return int(row[0])

    def free_bytes(self) -> int:
        return self.max_bytes - self._bytes

    def put(
        self,
        path: str,
        payload: bytes,
        spans: int,
        timeout: float | None = None,
        rejected: str | None = None,
    ) -> bool:
        """Store a payload durably; False when the spool is full (or busy past `timeout`).

        With `rejected`, the payload is kept aside for inspection and never replayed.
        """
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            if rejected is None and self._bytes + len(payload) > self.max_bytes:
                # Other processes may have drained it meanwhile: look again before refusing.
                self._bytes = self._pending_bytes()
                if rejected is None and self._bytes + len(payload) > self.max_bytes:
                    if not self._full_logged:
                        log.error(
                            "Warden spool %s is full (%d bytes, limit %d): records are being "
                            "dropped until the service is reachable again",
                            self.path, self._bytes, self.max_bytes,
                        )  # fmt: skip
                        self._full_logged = True
                    return False
            self._db.execute(
                "INSERT INTO spool (created, path, payload, digest, spans, rejected)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), path, payload, hashlib.sha256(payload).digest(), spans, rejected),
            )
            if rejected is None:
                self._bytes += len(payload)
            self._full_logged = False
            return True
        except sqlite3.Error as exc:
            log.error("Warden spool write failed: %s", exc)
            return False
        finally:
            self._lock.release()

    def claim(self, limit: int, lease: float) -> list[SpooledBatch]:
        """Claim up to `limit` pending rows, oldest first, for `lease` seconds."""
        now = time.time()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                rows = self._db.execute(
                    "UPDATE spool SET claimed_by = ?, claimed_until = ? WHERE id IN ("
                    " SELECT id FROM spool WHERE rejected IS NULL"
                    " AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY id LIMIT ?)"
                    " RETURNING id, path, payload, digest, spans, attempts",
                    (os.getpid(), now + lease, now, limit),
                ).fetchall()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                log.error("Warden spool read failed: %s", exc)
                return []
        good = []
        for row_id, path, payload, digest, spans, attempts in sorted(rows):
            if hashlib.sha256(payload).digest() != digest:
                self.corrupt += 1
                log.error("Warden spool row %d is damaged; skipped", row_id)
                self.delete(row_id)
                continue
            good.append(SpooledBatch(row_id, path, bytes(payload), spans, attempts))
        return good

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def delete(self, row_id: int) -> None:
        with self._lock:
            row = self._db.execute(
                "DELETE FROM spool WHERE id = ? RETURNING LENGTH(payload)", (row_id,)
            ).fetchone()
            if row:
                self._bytes = max(0, self._bytes - int(row[0]))

    def release(self, row_id: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE spool SET claimed_by = NULL, claimed_until = NULL, attempts = attempts + 1"
                " WHERE id = ?",
                (row_id,),
            )

    def reject(self, row_id: int, reason: str) -> None:
        """Keep a payload the service refused for good aside, out of the replay."""
        with self._lock:
            self._db.execute(
                "UPDATE spool SET rejected = ?, claimed_by = NULL, claimed_until = NULL"
                " WHERE id = ?",
                (reason[:500], row_id),
            )
            self._bytes = self._pending_bytes()

    def pending(self) -> tuple[int, int]:
        """(rows, spans) waiting to be sent, across every process sharing the spool."""
        with self._lock:
            rows, spans = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(spans), 0) FROM spool WHERE rejected IS NULL"
            ).fetchone()
        return int(rows), int(spans)
