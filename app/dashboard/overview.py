"""The overview: traffic over a time range (from the rollups), the drift verdict of each
model version that served in it, and where the audit ledger stands."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from app.audit.heads import TreeHead
from app.audit.ledger import checkpoints
from app.dashboard import rollups
from app.dashboard.rollups import Bucket
from app.drift import reports
from app.errors import BadRequest
from app.store.engine import read_connection
from app.store.tables import ModelVersion

_NS = 1_000_000_000
RANGES: dict[str, int] = {
    "15m": 15 * 60, "1h": 3600, "6h": 6 * 3600, "24h": 86_400, "7d": 7 * 86_400,
    "30d": 30 * 86_400,
}  # fmt: skip
DEFAULT_RANGE = "24h"
SEVERITY = {"none": 0, "warn": 1, "drift": 2}


@dataclass
class Overview:
    range: str
    since_ns: int
    until_ns: int
    width: int
    total: Bucket
    series: dict[str, list[Any]]
    versions: list[dict[str, Any]] = field(default_factory=list)
    ledger_size: int = 0
    head: TreeHead | None = None

    @property
    def per_minute(self) -> float:
        minutes = (self.until_ns - self.since_ns) / (60 * _NS)
        return self.total.requests / minutes if minutes else 0.0

    def rate(self, count: int) -> float | None:
        return count / self.total.requests if self.total.requests else None

    @property
    def p50(self) -> float | None:
        return rollups.percentile(self.total.latency, 0.5)

    @property
    def p95(self) -> float | None:
        return rollups.percentile(self.total.latency, 0.95)


def bucket_width(seconds: int) -> int:
    """Minutes up to a day, hours beyond: at most ~1,500 points a chart."""
    return rollups.MINUTE if seconds <= 86_400 else rollups.HOUR


def traffic(engine: Engine, project_id: int, range_key: str, now_ns: int | None = None) -> Overview:
    """Requests per minute, latency p50/p95 and deny/warn/review rates over the range."""
    if range_key not in RANGES:
        raise BadRequest(f"range must be one of {', '.join(RANGES)}")
    seconds = RANGES[range_key]
    width = bucket_width(seconds)
    step = width * _NS
    until = (now_ns or time.time_ns()) // step * step + step  # through the current bucket
    since = until - seconds * _NS
    buckets, _ = rollups.read_buckets(engine, project_id, width, since, until)
    total = Bucket()
    starts = list(range(since, until, step))
    present = [s for s in starts if s in buckets and buckets[s].requests]
    p50: dict[int, float] = {}
    p95: dict[int, float] = {}
    if present:
        latency = np.vstack([buckets[s].latency for s in present])
        p50 = dict(zip(present, rollups.percentiles(latency, 0.5).round(3).tolist(), strict=True))
        p95 = dict(zip(present, rollups.percentiles(latency, 0.95).round(3).tolist(), strict=True))
    series: dict[str, list[Any]] = {k: [] for k in (
        "t", "per_minute", "p50", "p95", "deny", "warn", "review", "error"
    )}  # fmt: skip
    for start in starts:
        series["t"].append(start // _NS)
        bucket = buckets.get(start)
        if bucket is None or not bucket.requests:
            series["per_minute"].append(0)
            for name in ("p50", "p95", "deny", "warn", "review", "error"):
                series[name].append(None)
            continue
        total.add(bucket)
        n = bucket.requests
        series["per_minute"].append(round(n / (width / 60), 3))
        series["p50"].append(p50[start])
        series["p95"].append(p95[start])
        series["deny"].append(round(bucket.denied / n, 4))
        series["warn"].append(round(bucket.warned / n, 4))
        series["review"].append(round(bucket.reviewed / n, 4))
        series["error"].append(round(bucket.errors / n, 4))
    out = Overview(range_key, since, until, width, total, series)
    out.versions = serving_versions(engine, project_id, since)
    out.ledger_size = checkpoints.head_state(engine, project_id).tree_size
    out.head = checkpoints.latest_head(engine, project_id)
    return out


def serving_versions(engine: Engine, project_id: int, since_ns: int) -> list[dict[str, Any]]:
    """Model versions seen in traffic since `since_ns`, each with its newest drift job's
    verdict (the most severe of its kinds), or None when never judged."""
    query = (
        select(
            ModelVersion.name, ModelVersion.version, ModelVersion.role, ModelVersion.aliases,
            ModelVersion.last_seen_unix_nano,
        )
        .where(ModelVersion.project_id == project_id, ModelVersion.last_seen_unix_nano >= since_ns)
        .order_by(ModelVersion.role, ModelVersion.name, ModelVersion.version)
    )  # fmt: skip
    with read_connection(engine) as conn:
        rows = conn.execute(query).all()
    out = []
    for row in rows:
        found = reports.list_reports(engine, project_id, row.name, row.version, limit=3).items
        job = found[0].job_id if found else None
        kinds = {r.kind: r.verdict for r in found if r.job_id == job}
        verdict = max(kinds.values(), key=SEVERITY.__getitem__) if kinds else None
        out.append({
            "name": row.name, "version": row.version, "role": row.role,
            "aliases": row.aliases, "last_seen": row.last_seen_unix_nano,
            "drift": verdict, "drift_kinds": kinds,
            "drift_at": found[0].created_at if found else None,
        })  # fmt: skip
    return out
