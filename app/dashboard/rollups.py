"""Per-minute and per-hour traffic rollups: what the overview reads instead of every request.

A rollup row holds, for one project and one bucket of request start times (a minute or an
hour): how many requests, how many ended in error, how many met a `deny`, `warn` or
`require_review` policy verdict, the outcomes, and a latency histogram (log-spaced buckets,
24 per decade from 0.01 ms to 10^7 ms, so a percentile read from it is within about 5%).

`roll_up` folds the requests stored since its last run into the rollups, in request-id
order, remembering where it stopped (`request_rollup_cursor`); the service runs it in a
background thread, in one process of the deployment (`Roller`, app/daemons.py). Whatever it
has not folded yet, the overview reads from `requests` directly (`tail`), so the figures are
always complete. Requests are insert-only; a request deleted later by retention still counts
in the rollups: the overview shows the traffic as it arrived.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, insert, select, update

from app.daemons import PeriodicWorker
from app.metrics import Metrics
from app.store import leadership
from app.store.dialect import is_postgresql
from app.store.engine import read_connection, write_transaction
from app.store.tables import PolicyEvaluation, Request, RequestRollup, RollupCursor

MINUTE, HOUR = 60, 3600
WIDTHS = (MINUTE, HOUR)
CHUNK = 20_000
# Latency bucket edges in milliseconds: 24 per decade, 0.01 ms to 10^7 ms.
EDGES = 10.0 ** (np.arange(-48, 24 * 7 + 1) / 24.0)
BINS = len(EDGES) + 1  # below the first edge, between each pair, above the last
# PostgreSQL hands out ids before commit, so a transaction can commit after a later id's:
# only requests stored this long ago are folded there (SQLite commits in id order).
POSTGRES_SETTLE_SECONDS = 30.0

_NS = 1_000_000_000


def histogram(durations_ms: Iterable[float]) -> np.ndarray:
    """Counts of `durations_ms` per latency bucket."""
    values = np.fromiter(durations_ms, dtype=np.float64)
    return np.bincount(np.searchsorted(EDGES, values), minlength=BINS).astype(np.int64)


def percentiles(counts: np.ndarray, q: float) -> np.ndarray:
    """The `q` quantile (0..1) of each row of latency histograms (one a row), interpolated
    within its bucket on a log scale; NaN for an empty row."""
    counts = np.atleast_2d(counts)
    rows = np.arange(len(counts))
    totals = counts.sum(axis=1)
    cumulative = np.cumsum(counts, axis=1)
    rank = q * totals
    index = (cumulative < np.maximum(rank, 1e-9)[:, None]).sum(axis=1)
    index = np.minimum(index, BINS - 1)
    before = np.where(index > 0, cumulative[rows, np.maximum(index - 1, 0)], 0)
    inside = counts[rows, index]
    share = np.clip(np.where(inside > 0, (rank - before) / np.maximum(inside, 1), 0.5), 0, 1)
    logs = np.log10(EDGES)
    low = logs[np.clip(index - 1, 0, len(EDGES) - 1)]
    high = logs[np.clip(index, 0, len(EDGES) - 1)]
    found = 10 ** (low + (high - low) * share)
    found = np.where(index == 0, EDGES[0], found)
    found = np.where(index >= len(EDGES), EDGES[-1], found)
    return np.where(totals > 0, found, np.nan)


def percentile(counts: np.ndarray, q: float) -> float | None:
    """The `q` quantile of the latencies one histogram counts; None when it is empty."""
    found = float(percentiles(counts, q)[0])
    return None if np.isnan(found) else found


@dataclass
class Bucket:
    """What one rollup row counts (or the tail's share of one bucket)."""

    requests: int = 0
    errors: int = 0
    denied: int = 0
    warned: int = 0
    reviewed: int = 0
    duration_ms_sum: float = 0.0
    latency: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, other: Bucket) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.denied += other.denied
        self.warned += other.warned
        self.reviewed += other.reviewed
        self.duration_ms_sum += other.duration_ms_sum
        self.latency = self.latency + other.latency
        for outcome, count in other.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + count

    def to_row(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "errors": self.errors, "denied": self.denied,
            "warned": self.warned, "reviewed": self.reviewed,
            "duration_ms_sum": self.duration_ms_sum,
            "latency": self.latency.astype("<u4").tobytes(), "outcomes": self.outcomes,
        }  # fmt: skip

    @classmethod
    def from_row(cls, row: Any) -> Bucket:
        return cls(
            int(row.requests), int(row.errors), int(row.denied), int(row.warned),
            int(row.reviewed), float(row.duration_ms_sum),
            np.frombuffer(bytes(row.latency), dtype="<u4").astype(np.int64),
            dict(row.outcomes or {}),
        )  # fmt: skip


_FLAGS = {"deny": "denied", "warn": "warned", "require_review": "reviewed"}


def policy_flags(conn: Any, pairs: Sequence[tuple[int, str]]) -> dict[tuple[int, str], set[str]]:
    """For (project, trace) pairs: which of deny, warn, require_review any policy said."""
    found: dict[tuple[int, str], set[str]] = {}
    by_project: dict[int, list[str]] = {}
    for project_id, trace_id in pairs:
        by_project.setdefault(project_id, []).append(trace_id)
    for project_id, traces in by_project.items():
        # A plain IN per project: SQLite looks each trace up in the (project, trace) index
        # (a row-value IN would scan the table).
        for start in range(0, len(traces), 500):
            query = select(PolicyEvaluation.trace_id, PolicyEvaluation.outcome).where(
                PolicyEvaluation.project_id == project_id,
                PolicyEvaluation.trace_id.in_(traces[start : start + 500]),
                PolicyEvaluation.outcome.in_(tuple(_FLAGS)),
            )
            for trace_id, outcome in conn.execute(query):
                found.setdefault((project_id, trace_id), set()).add(outcome)
    return found


def aggregate(
    rows: Sequence[Any], flags: dict[tuple[int, str], set[str]], widths: Sequence[int] = WIDTHS
) -> dict[tuple[int, int, int], Bucket]:
    """Rows of `requests` (project_id, trace_id, start_time_unix_nano, duration_ms, status,
    outcome) into buckets keyed by (project, width, bucket start in unix nanoseconds)."""
    out: dict[tuple[int, int, int], Bucket] = {}
    groups: dict[tuple[int, int, int], list[Any]] = {}
    for row in rows:
        for width in widths:
            start = row.start_time_unix_nano // (width * _NS) * (width * _NS)
            groups.setdefault((row.project_id, width, start), []).append(row)
    for key, members in groups.items():
        bucket = Bucket(requests=len(members))
        for row in members:
            if row.status == "error":
                bucket.errors += 1
            said = flags.get((row.project_id, row.trace_id), ())
            bucket.denied += "deny" in said
            bucket.warned += "warn" in said
            bucket.reviewed += "require_review" in said
            outcome = row.outcome or "unknown"
            bucket.outcomes[outcome] = bucket.outcomes.get(outcome, 0) + 1
        durations = [float(r.duration_ms) for r in members]
        bucket.duration_ms_sum = float(sum(durations))
        bucket.latency = histogram(durations)
        out[key] = bucket
    return out


_ROW_COLUMNS = (
    Request.id, Request.project_id, Request.trace_id, Request.start_time_unix_nano,
    Request.duration_ms, Request.status, Request.outcome, Request.ingested_at,
)  # fmt: skip


def cursor_position(conn: Any) -> int:
    """The id of the last request folded into the rollups (0: none yet)."""
    found = conn.execute(
        select(RollupCursor.last_request_id).where(RollupCursor.id == 1)
    ).scalar_one_or_none()
    return int(found or 0)


def roll_up(engine: Engine, chunk: int = CHUNK) -> int:
    """Fold up to `chunk` requests stored since the last run into the rollups; returns how
    many. Safe to run in several processes at once: each chunk commits only if the cursor
    has not moved meanwhile."""
    with read_connection(engine) as conn:
        after = cursor_position(conn)
        query = select(*_ROW_COLUMNS).where(Request.id > after).order_by(Request.id).limit(chunk)
        rows = conn.execute(query).all()
        if is_postgresql(engine):
            settled = datetime.now(UTC) - timedelta(seconds=POSTGRES_SETTLE_SECONDS)
            fresh = next((i for i, r in enumerate(rows) if r.ingested_at > settled), len(rows))
            rows = rows[:fresh]
        if not rows:
            return 0
        flags = policy_flags(conn, sorted({(r.project_id, r.trace_id) for r in rows}))
    buckets = aggregate(rows, flags)
    last = int(rows[-1].id)
    with write_transaction(engine) as conn:
        lock = select(RollupCursor.last_request_id).where(RollupCursor.id == 1)
        if is_postgresql(conn):
            lock = lock.with_for_update()
        current = conn.execute(lock).scalar_one_or_none()
        if int(current or 0) != after:
            return 0  # another process folded these meanwhile
        if current is None:
            conn.execute(insert(RollupCursor).values(id=1, last_request_id=last))
        else:
            conn.execute(
                update(RollupCursor).where(RollupCursor.id == 1).values(last_request_id=last)
            )
        _merge(conn, buckets)
    return len(rows)


def _merge(conn: Any, buckets: dict[tuple[int, int, int], Bucket]) -> None:
    existing: dict[tuple[int, int, int], Bucket] = {}
    groups: dict[tuple[int, int], list[int]] = {}
    for project_id, width, start in buckets:
        groups.setdefault((project_id, width), []).append(start)
    for (project_id, width), starts in groups.items():
        for first in range(0, len(starts), 500):
            query = select(RequestRollup).where(
                RequestRollup.project_id == project_id,
                RequestRollup.width_seconds == width,
                RequestRollup.start_unix_nano.in_(starts[first : first + 500]),
            )
            for row in conn.execute(query):
                existing[(project_id, width, int(row.start_unix_nano))] = Bucket.from_row(row)
    fresh = []
    for key, bucket in buckets.items():
        if key in existing:
            merged = existing[key]
            merged.add(bucket)
            project_id, width, start = key
            conn.execute(
                update(RequestRollup)
                .where(
                    RequestRollup.project_id == project_id,
                    RequestRollup.width_seconds == width,
                    RequestRollup.start_unix_nano == start,
                )
                .values(**merged.to_row())
            )
        else:
            project_id, width, start = key
            row = {"project_id": project_id, "width_seconds": width, "start_unix_nano": start}
            fresh.append({**row, **bucket.to_row()})
    if fresh:
        conn.execute(insert(RequestRollup), fresh)


def catch_up(engine: Engine, chunk: int = CHUNK) -> int:
    """Fold everything there is to fold now; returns how many requests."""
    total = 0
    while done := roll_up(engine, chunk):
        total += done
    return total


def read_buckets(
    engine: Engine, project_id: int, width: int, since_ns: int, until_ns: int
) -> tuple[dict[int, Bucket], int]:
    """The project's buckets of `width` starting in [since, until), the rolled-up ones and
    the not-yet-folded tail's added together; and the cursor position the tail began at."""
    with read_connection(engine) as conn:
        after = cursor_position(conn)
        rows = conn.execute(
            select(RequestRollup).where(
                RequestRollup.project_id == project_id,
                RequestRollup.width_seconds == width,
                RequestRollup.start_unix_nano >= since_ns // (width * _NS) * (width * _NS),
                RequestRollup.start_unix_nano < until_ns,
            )
        ).all()
        # By id alone, so the primary key serves it whatever the range: the tail is short.
        tail = [
            r
            for r in conn.execute(select(*_ROW_COLUMNS).where(Request.id > after))
            if r.project_id == project_id and since_ns <= r.start_time_unix_nano < until_ns
        ]
        flags = policy_flags(conn, [(r.project_id, r.trace_id) for r in tail]) if tail else {}
    out = {int(r.start_unix_nano): Bucket.from_row(r) for r in rows}
    for (_, _, start), bucket in aggregate(tail, flags, (width,)).items():
        out.setdefault(start, Bucket()).add(bucket)
    return out, after


def known_outcomes(engine: Engine, project_id: int, days: int = 30) -> list[str]:
    """Outcomes seen in the last `days` days, from the hourly rollups."""
    hour = HOUR * _NS
    since = (time.time_ns() - days * 86_400 * _NS) // hour * hour
    query = select(RequestRollup.outcomes).where(
        RequestRollup.project_id == project_id,
        RequestRollup.width_seconds == HOUR,
        RequestRollup.start_unix_nano >= since,
    )
    found: set[str] = set()
    with read_connection(engine) as conn:
        for (outcomes,) in conn.execute(query):
            found.update(outcomes or {})
    return sorted(found)


class Roller(PeriodicWorker):
    """The rollup thread: `catch_up` every `interval` seconds, in the process that leads the
    `dashboard-rollups` job. A failed round is logged; the tail covers it until the next."""

    def __init__(self, engine: Engine, interval: float, metrics: Metrics | None = None) -> None:
        name = "dashboard-rollups"
        super().__init__(name, interval, leadership.for_engine(engine, name), metrics)
        self.engine = engine

    def tick(self) -> None:
        while not self.stopping and roll_up(self.engine):
            pass
