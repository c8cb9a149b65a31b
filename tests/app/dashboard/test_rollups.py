"""The overview's rollups on a real database (SQLite and PostgreSQL): folded or not yet,
the figures are those of the requests themselves, never counted twice."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, insert

from app.dashboard import rollups
from app.dashboard.views import overview
from app.store.engine import read_connection, write_transaction
from app.store.tables import PolicyEvaluation, Request
from app.tenancy import projects

NS = 1_000_000_000


def test_percentiles_from_the_histogram_are_within_five_percent() -> None:
    rng = np.random.default_rng(0)
    durations = rng.lognormal(4.0, 1.2, 50_000)
    counts = rollups.histogram(durations)
    assert counts.sum() == len(durations)
    for q in (0.5, 0.95, 0.99):
        estimate = rollups.percentile(counts, q)
        assert estimate is not None
        assert abs(estimate / np.quantile(durations, q) - 1) < 0.05, q
    assert rollups.percentile(np.zeros(rollups.BINS, dtype=np.int64), 0.5) is None


def _requests(
    engine: Engine, pid: int, n: int, start: int, ingested: datetime, seed: int
) -> list[dict[str, object]]:
    """`n` requests over three hours from `start`, each with the policy verdicts its
    `flags` name (deny, warn, require_review; and allow, which flags nothing)."""
    rng = random.Random(seed)
    rows, verdicts = [], []
    for i in range(n):
        trace = f"{seed:08x}{i:024x}"
        t0 = start + rng.randrange(3 * 3600) * NS
        flags = {o for o in ("deny", "warn", "require_review", "allow") if rng.random() < 0.3}
        rows.append({
            "project_id": pid, "trace_id": trace, "root_span_id": f"{i:016x}", "name": "r",
            "service_name": "s", "start_time_unix_nano": t0, "end_time_unix_nano": t0 + 1,
            "duration_ms": rng.lognormvariate(3, 1), "status": "error" if i % 13 == 0 else "ok",
            "fingerprint": None, "fingerprint_key_id": None, "subject": None,
            "outcome": rng.choice(["booked", "clarify", None]), "models": {}, "features": None,
            "ingested_at": ingested,
        })  # fmt: skip
        verdicts += [
            {"project_id": pid, "trace_id": trace, "span_id": f"{i:016x}", "seq": seq,
             "phase": "post_decision", "policy_id": f"p{seq}", "outcome": outcome,
             "time_unix_nano": t0}
            for seq, outcome in enumerate(sorted(flags))
        ]  # fmt: skip
        rows[-1]["flags"] = flags
    with write_transaction(engine) as conn:
        conn.execute(insert(Request), [{k: v for k, v in r.items() if k != "flags"} for r in rows])
        if verdicts:
            conn.execute(insert(PolicyEvaluation), verdicts)
    return rows


def _totals(engine: Engine, pid: int, since: int, until: int, width: int) -> rollups.Bucket:
    buckets, _ = rollups.read_buckets(engine, pid, width, since, until)
    total = rollups.Bucket()
    for bucket in buckets.values():
        total.add(bucket)
    return total


def _check(engine: Engine, pid: int, rows: list[dict[str, object]], since: int, until: int) -> None:
    outcomes: dict[str, int] = {}
    for r in rows:
        key = str(r["outcome"] or "unknown")
        outcomes[key] = outcomes.get(key, 0) + 1
    for width in rollups.WIDTHS:
        total = _totals(engine, pid, since, until, width)
        assert total.requests == len(rows), width
        assert total.errors == sum(r["status"] == "error" for r in rows)
        assert total.outcomes == outcomes
        for name, flag in (("denied", "deny"), ("warned", "warn"), ("reviewed", "require_review")):
            assert getattr(total, name) == sum(flag in r["flags"] for r in rows), name
        assert int(total.latency.sum()) == len(rows)
        assert total.duration_ms_sum == pytest.approx(sum(float(r["duration_ms"]) for r in rows))


def test_folded_and_unfolded_requests_count_once(engine: Engine) -> None:
    pid = projects.create_project(engine, "rolled")
    other = projects.create_project(engine, "other")
    start = (time.time_ns() - 6 * 3600 * NS) // (3600 * NS) * (3600 * NS)
    until = start + 4 * 3600 * NS
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    rows = _requests(engine, pid, 300, start, earlier, seed=1)
    _requests(engine, other, 50, start, earlier, seed=9)  # another project's: never counted
    _check(engine, pid, rows, start, until)  # nothing folded yet: all of it is the tail
    assert rollups.catch_up(engine, chunk=70) == 350  # in chunks, both projects
    _check(engine, pid, rows, start, until)
    # Stored just now: SQLite folds them at once, PostgreSQL once they settled; either way
    # they count once.
    rows += _requests(engine, pid, 40, start, datetime.now(UTC), seed=2)
    _check(engine, pid, rows, start, until)
    rollups.catch_up(engine)
    _check(engine, pid, rows, start, until)
    # A range that cuts the hours: only the buckets starting inside it.
    inside = [r for r in rows if start + 3600 * NS <= int(r["start_time_unix_nano"]) < until]
    assert _totals(engine, pid, start + 3600 * NS, until, rollups.MINUTE).requests == len(inside)


def test_overview_reads_the_range_and_the_percentiles(engine: Engine) -> None:
    pid = projects.create_project(engine, "overview")
    now = time.time_ns()
    rows = _requests(engine, pid, 200, now - 4 * 3600 * NS, datetime.now(UTC), seed=4)
    seen = overview.traffic(engine, pid, "6h", now_ns=now)
    assert seen.total.requests == 200
    assert len(seen.series.t) == 6 * 60 and seen.width == rollups.MINUTE
    assert sum(1 for v in seen.series.per_minute if v) <= 200
    durations = sorted(float(r["duration_ms"]) for r in rows)
    p95 = seen.p95
    assert p95 is not None and abs(p95 / durations[int(0.95 * 199)] - 1) < 0.1
    week = overview.traffic(engine, pid, "7d", now_ns=now)
    assert week.width == rollups.HOUR and week.total.requests == 200
    assert overview.traffic(engine, pid, "15m", now_ns=now).total.requests <= 200
    with pytest.raises(overview.BadRequest):
        overview.traffic(engine, pid, "1y")


def test_the_roller_thread_folds_new_requests(engine: Engine) -> None:
    pid = projects.create_project(engine, "thread")
    _requests(engine, pid, 30, time.time_ns() - 3600 * NS, datetime.now(UTC) - timedelta(hours=1),
              seed=5)  # fmt: skip
    roller = rollups.Roller(engine, 0.05)
    roller.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with read_connection(engine) as conn:
                if rollups.cursor_position(conn) > 0:
                    break
            time.sleep(0.05)
    finally:
        roller.stop()
    with read_connection(engine) as conn:
        assert rollups.cursor_position(conn) > 0
