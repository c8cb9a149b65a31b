"""The overview page: traffic over a time range (from the rollups), the drift verdict of each
model version that served in it, the world-model versions' decision KPIs over the range, the
running experiments with their verdicts, and where the audit ledger stands."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Engine

from app.audit.heads import TreeHead
from app.audit.ledger import checkpoints
from app.dashboard import rollups
from app.dashboard.rollups import Bucket
from app.dashboard.views.charts import Chart
from app.dashboard.views.experiments import ListedExperiment, listed, stored
from app.dashboard.views.version_kpis import VersionKpis, version_kpis
from app.drift import reports
from app.errors import BadRequest
from app.experiments import configs
from app.registry import model_versions

_NS = 1_000_000_000
RANGES: dict[str, int] = {
    "15m": 15 * 60, "1h": 3600, "6h": 6 * 3600, "24h": 86_400, "7d": 7 * 86_400,
    "30d": 30 * 86_400,
}  # fmt: skip
DEFAULT_RANGE = "24h"
SEVERITY = {"none": 0, "warn": 1, "drift": 2}
WORLD_MODEL = "world_model"


def range_seconds(range_key: str) -> int:
    """The seconds a range (`15m` ... `30d`) spans; 400 for another."""
    if range_key not in RANGES:
        raise BadRequest(f"range must be one of {', '.join(RANGES)}")
    return RANGES[range_key]


@dataclass
class TrafficSeries:
    """One value per bucket, in time order; None where a bucket had no request."""

    t: list[int] = field(default_factory=list)  # the bucket's start, unix seconds
    per_minute: list[float | None] = field(default_factory=list)
    p50: list[float | None] = field(default_factory=list)
    p95: list[float | None] = field(default_factory=list)
    deny: list[float | None] = field(default_factory=list)
    warn: list[float | None] = field(default_factory=list)
    review: list[float | None] = field(default_factory=list)
    error: list[float | None] = field(default_factory=list)


@dataclass
class Traffic:
    """A project's traffic over a range: the totals, and the series per bucket."""

    range: str
    since_ns: int
    until_ns: int
    width: int  # seconds a bucket spans
    total: Bucket
    series: TrafficSeries

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


@dataclass(frozen=True)
class ServingVersion:
    """A model version that served in the range, with its newest drift job's verdict (the
    most severe of its kinds), or None when never judged."""

    name: str
    version: str
    role: str | None
    aliases: list[str]
    last_seen: int
    drift: str | None
    drift_kinds: dict[str, str]
    drift_at: str | None


@dataclass(frozen=True)
class OverviewPage:
    traffic: Traffic
    charts: dict[str, Chart]
    ranges: list[str]
    versions: list[ServingVersion]
    ledger_size: int
    head: TreeHead | None
    kpis: VersionKpis  # of the world-model versions serving in the range, over the range
    experiments: list[ListedExperiment]  # the running ones, with their stored verdicts


def bucket_width(seconds: int) -> int:
    """Minutes up to a day, hours beyond: at most ~1,500 points a chart."""
    return rollups.MINUTE if seconds <= 86_400 else rollups.HOUR


def traffic(engine: Engine, project_id: int, range_key: str, now_ns: int | None = None) -> Traffic:
    """Requests per minute, latency p50/p95 and deny/warn/review rates over the range."""
    seconds = range_seconds(range_key)
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
    series = TrafficSeries()
    for start in starts:
        series.t.append(start // _NS)
        bucket = buckets.get(start)
        if bucket is None or not bucket.requests:
            series.per_minute.append(0)
            for empty in (series.p50, series.p95, series.deny, series.warn, series.review,
                          series.error):  # fmt: skip
                empty.append(None)
            continue
        total.add(bucket)
        n = bucket.requests
        series.per_minute.append(round(n / (width / 60), 3))
        series.p50.append(p50[start])
        series.p95.append(p95[start])
        series.deny.append(round(bucket.denied / n, 4))
        series.warn.append(round(bucket.warned / n, 4))
        series.review.append(round(bucket.reviewed / n, 4))
        series.error.append(round(bucket.errors / n, 4))
    return Traffic(range_key, since, until, width, total, series)


def serving_versions(engine: Engine, project_id: int, since_ns: int) -> list[ServingVersion]:
    """Model versions seen in traffic since `since_ns`, each with its newest drift job's
    verdict."""
    out = []
    for seen in model_versions.serving_since(engine, project_id, since_ns):
        found = reports.list_reports(engine, project_id, seen.name, seen.version, limit=3).items
        job = found[0].job_id if found else None
        kinds = {r.kind: r.verdict for r in found if r.job_id == job}
        verdict = max(kinds.values(), key=SEVERITY.__getitem__) if kinds else None
        out.append(
            ServingVersion(
                name=seen.name, version=seen.version, role=seen.role, aliases=seen.aliases,
                last_seen=seen.last_seen_unix_nano, drift=verdict, drift_kinds=kinds,
                drift_at=found[0].created_at if found else None,
            )
        )  # fmt: skip
    return out


def charts(s: TrafficSeries) -> dict[str, Chart]:
    return {
        "traffic": {"x": s.t, "time": True, "yLabel": "requests / minute",
                    "series": [{"label": "requests / minute", "values": s.per_minute}]},
        "latency": {"x": s.t, "time": True, "yLabel": "ms",
                    "series": [{"label": "p50 (ms)", "values": s.p50},
                               {"label": "p95 (ms)", "values": s.p95}]},
        "rates": {"x": s.t, "time": True, "yLabel": "share of requests",
                  "series": [{"label": "deny", "values": s.deny, "color": "#dc2626"},
                             {"label": "warn", "values": s.warn, "color": "#d97706"},
                             {"label": "review", "values": s.review, "color": "#7c3aed"},
                             {"label": "error", "values": s.error, "color": "#475569"}]},
    }  # fmt: skip


def overview_page(engine: Engine, project_id: int, range_key: str) -> OverviewPage:
    found = traffic(engine, project_id, range_key)
    versions = serving_versions(engine, project_id, found.since_ns)
    world_models = {(v.name, v.role) for v in versions if v.role == WORLD_MODEL}
    results = stored(engine, project_id, "running")
    return OverviewPage(
        traffic=found,
        charts=charts(found.series),
        ranges=list(RANGES),
        versions=versions,
        kpis=version_kpis(engine, project_id, world_models, found.since_ns),
        experiments=[
            listed(e, results.get(e.name))
            for e in configs.list_experiments(engine, project_id, "running")
        ],
        ledger_size=checkpoints.head_state(engine, project_id).tree_size,
        head=checkpoints.latest_head(engine, project_id),
    )
