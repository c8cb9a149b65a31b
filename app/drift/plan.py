"""What a drift job compares: which world-model versions it judges, and for each, the
bounds of its traffic reference and of its current window.

The current window is the version's newest `current_count` requests, or its last
`current_seconds`. The traffic reference is, by default, the `reference_count` requests just
before the current window (`reference = "preceding"`): a stack that keeps state (a calendar
that fills, a cache, a queue) serves early and late traffic of one version differently for
reasons that are not drift, and a reference taken from the version's first requests would
judge that as drift every time (README "Drift" gives the figures). With `reference =
"first"` it is the version's first `reference_count` requests, and a time range pinned in the
settings overrides both; the current window then never reaches back into the reference.
Planning reads a few counts and times of the version's traffic, never the requests themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from app.drift import windows
from app.drift.settings import DriftSettings
from app.drift.windows import Bounds
from app.store.engine import read_connection
from app.store.tables import ModelVersion

# The default traffic reference is sampled from a version's first this-many times
# `reference_count` requests (`spread_reference`).
REFERENCE_SPREAD = 10

# The role whose versions are monitored: drift is judged per world-model version, whose
# training data and own traffic are the references.
ROLE = "world_model"


@dataclass(frozen=True)
class Plan:
    """One version's windows. A None window is one the version's traffic does not fill."""

    model_name: str
    model_version: str
    traffic: Bounds | None
    """From the version's first request to its last; None when it has none."""
    reference: Bounds | None
    """The traffic reference; None while the version has fewer than `reference_count`
    requests to fill it."""
    current: Bounds | None
    """The current window; None when there is no traffic after the reference."""
    reference_rows: int | None = None
    """When set, the reference is this many of the requests in its bounds, evenly spaced."""


def monitored(
    engine: Engine, project_id: int, config: DriftSettings, now: int
) -> list[tuple[str, str]]:
    """World-model versions with traffic recently: within the time window, or the last
    day for count windows."""
    lookback = config.current_seconds if config.window == "time" else 86_400
    since = now - lookback * 1_000_000_000
    query = (
        select(ModelVersion.name, ModelVersion.version)
        .where(
            ModelVersion.project_id == project_id,
            ModelVersion.role == ROLE,
            ModelVersion.last_seen_unix_nano >= since,
        )
        .order_by(ModelVersion.name, ModelVersion.version)
    )
    with read_connection(engine) as conn:
        return [(r.name, r.version) for r in conn.execute(query)]


def plan(
    engine: Engine, project_id: int, name: str, version: str, config: DriftSettings, now: int
) -> Plan:
    """The version's windows at `now` (Unix nanoseconds)."""
    traffic = windows.span_of_traffic(engine, project_id, name, version)
    if config.reference == "spread" and not config.reference_since:
        current = current_window(engine, project_id, name, version, config, now, traffic, None)
        reference = spread_reference(engine, project_id, name, version, config, traffic, current)
        return Plan(name, version, traffic, reference, current, config.reference_count)
    if config.reference == "preceding" and not config.reference_since:
        current = current_window(engine, project_id, name, version, config, now, traffic, None)
        reference = preceding_reference(engine, project_id, name, version, config, current)
        return Plan(name, version, traffic, reference, current)
    reference = traffic_reference(engine, project_id, name, version, config, traffic)
    current = current_window(engine, project_id, name, version, config, now, traffic, reference)
    return Plan(name, version, traffic, reference, current)


def spread_reference(
    engine: Engine,
    project_id: int,
    name: str,
    version: str,
    config: DriftSettings,
    traffic: Bounds | None,
    current: Bounds | None,
) -> Bounds | None:
    """The version's first period: its first `reference_count * REFERENCE_SPREAD` requests,
    or, while it has fewer before the current window, all of those (at least
    `reference_count`); the detectors see `reference_count` of them, evenly spaced."""
    if traffic is None or current is None:
        return None
    period = config.reference_count * REFERENCE_SPREAD
    last = windows.nth_start(engine, project_id, name, version, period, newest=False)
    end = current.start if last is None else min(last + 1, current.start)
    enough = windows.nth_start(
        engine, project_id, name, version, config.reference_count, newest=False
    )
    if enough is None or enough >= end:
        return None
    return Bounds(traffic.start, end)


def preceding_reference(
    engine: Engine,
    project_id: int,
    name: str,
    version: str,
    config: DriftSettings,
    current: Bounds | None,
) -> Bounds | None:
    """The `reference_count` requests just before the current window; None while fewer."""
    if current is None:
        return None
    nth = windows.nth_start(
        engine, project_id, name, version, config.reference_count, newest=True,
        before=current.start,
    )  # fmt: skip
    return None if nth is None else Bounds(nth, current.start)


def traffic_reference(
    engine: Engine,
    project_id: int,
    name: str,
    version: str,
    config: DriftSettings,
    traffic: Bounds | None,
) -> Bounds | None:
    if config.reference_since and config.reference_until:
        return Bounds(_unix_nano(config.reference_since), _unix_nano(config.reference_until))
    if traffic is None:
        return None
    nth = windows.nth_start(engine, project_id, name, version, config.reference_count, newest=False)
    return None if nth is None else Bounds(traffic.start, nth + 1)


def current_window(
    engine: Engine,
    project_id: int,
    name: str,
    version: str,
    config: DriftSettings,
    now: int,
    traffic: Bounds | None,
    after: Bounds | None,
) -> Bounds | None:
    if traffic is None:
        return None
    end = max(traffic.end, now)
    if config.window == "time":
        start = now - config.current_seconds * 1_000_000_000
        end = now + 1
    else:
        nth = windows.nth_start(
            engine, project_id, name, version, config.current_count, newest=True
        )
        start = traffic.start if nth is None else nth
    if after is not None:
        start = max(start, after.end)
    return Bounds(start, end) if start < end else None


def _unix_nano(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
