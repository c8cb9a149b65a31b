"""A drift job end to end on a real store: each window read once, every registered kind
judged, and a kind that is not one of Warden's own dropped in without touching the job."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest
from sqlalchemy import Engine, event

from app.drift import reports
from app.drift import settings as drift_settings
from app.drift.detectors import registry
from app.drift.detectors.protocol import TRAFFIC, DriftResult, Options, Source, Verdict
from app.drift.detectors.sample import Sample
from app.drift.job import DriftRunner
from app.store import schema
from app.store.engine import create_db_engine
from app.tenancy import projects
from tests.app.drift.test_windows import T0, add_requests
from tests.conftest import embedded_settings

NOW = T0 + 10**12


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[Engine, list[str]]]:
    """A SQLite store whose every statement, through SQLAlchemy or a raw DBAPI cursor, is
    written down as SQLite runs it."""
    engine = create_db_engine(embedded_settings(tmp_path))
    statements: list[str] = []

    @event.listens_for(engine, "connect")
    def _trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    schema.upgrade(engine)
    yield engine, statements
    engine.dispose()


def _booking(engine: Engine, reference: str = "first") -> int:
    """A project with 120 requests of wm v1: the last 50 the current window, the first 50
    the reference (or with `reference="preceding"`, the 50 before the current window)."""
    project_id = projects.create_project(engine, "booking")
    drift_settings.update_settings(
        engine, project_id,
        {"reference": reference, "reference_count": 50, "current_count": 50, "min_requests": 20},
    )  # fmt: skip
    add_requests(engine, project_id, 0, 120)
    return project_id


def _window_reads(statements: list[str]) -> dict[str, int]:
    """How often the parts of a window were read: its requests' features, their latent
    states, their decisions; and how often the version's span of traffic was asked."""
    return {
        "features": sum("CAST(requests.features AS TEXT)" in s for s in statements),
        "states": sum("FROM world_model_states" in s for s in statements),
        "decisions": sum("FROM planner_decisions" in s for s in statements),
        "span": sum("min(request_models.start_time_unix_nano)" in s for s in statements),
    }


def test_a_job_reads_each_window_once(traced: tuple[Engine, list[str]], tmp_path: Path) -> None:
    engine, statements = traced
    _booking(engine)
    runner = DriftRunner(engine, f"file://{tmp_path / 'mlruns'}", tmp_path, log_to_mlflow=False)
    statements.clear()
    (first,) = runner.run("booking", "wm", "1", now=NOW).versions
    assert {r.kind for r in first.reports} == set(registry.KINDS), first.skipped
    # The current window and the reference, each read once for every kind.
    assert _window_reads(statements) == {"features": 2, "states": 2, "decisions": 2, "span": 1}
    statements.clear()
    (again,) = runner.run("booking", "wm", "1", now=NOW).versions
    # The reference is kept between jobs: only the current window is read.
    assert _window_reads(statements) == {"features": 1, "states": 1, "decisions": 1, "span": 1}
    assert again.to_json()["reports"] == first.to_json()["reports"]


class HoursDetector:
    """A kind Warden does not have, written for this test: has the mean of the `hours`
    feature moved by more than one standard deviation of the reference's?"""

    references: tuple[Source, ...] = (TRAFFIC,)

    def __init__(self, options: Options = Options()) -> None:
        self.options = options
        self.mean = self.std = math.nan

    def fit(self, reference: Sample) -> Self:
        hours = reference.features["hours"]
        self.mean, self.std = float(hours.mean()), float(hours.std())
        return self

    def test(self, current: Sample) -> DriftResult:
        shift = abs(float(current.features["hours"].mean()) - self.mean) / self.std
        verdict: Verdict = "drift" if shift > 1 else "none"
        return DriftResult(verdict, float(verdict == "drift"), {"shift": shift})


def test_a_fourth_kind_drops_in(engine: Engine, tmp_path: Path) -> None:
    project_id = _booking(engine)
    detectors = {**registry.registered(), "hours": HoursDetector}
    runner = DriftRunner(
        engine, f"file://{tmp_path / 'mlruns'}", tmp_path, log_to_mlflow=False,
        detectors=detectors,
    )  # fmt: skip
    (version,) = runner.run("booking", "wm", "1", now=NOW).versions
    by_kind = {r.kind: r for r in version.reports}
    assert list(by_kind) == [*registry.KINDS, "hours"]
    hours = by_kind["hours"]
    # Requests 70-119 against 0-49: the mean moved by about 70 / 14.6 standard deviations.
    assert hours.verdict == "drift" and hours.scores["shift"] == pytest.approx(70 / 14.577, 1e-3)
    assert hours.reference["source"] == "traffic" and hours.reference["rows"] == 50
    assert version.verdict == "drift"
    stored = reports.list_reports(engine, project_id).items
    assert sorted(r.kind for r in stored) == sorted([*registry.KINDS, "hours"])
    assert {r.job_id for r in stored} == {version.job_id}


def test_by_default_the_reference_is_spread_across_the_versions_first_period(
    engine: Engine, tmp_path: Path
) -> None:
    project_id = projects.create_project(engine, "booking")
    drift_settings.update_settings(
        engine, project_id, {"reference_count": 20, "current_count": 50, "min_requests": 20}
    )
    add_requests(engine, project_id, 0, 400)
    runner = DriftRunner(
        engine, f"file://{tmp_path / 'mlruns'}", tmp_path, log_to_mlflow=False,
        detectors={"hours": HoursDetector},
    )  # fmt: skip
    (version,) = runner.run("booking", "wm", "1", now=NOW).versions
    (hours,) = version.reports
    # 20 of the version's first 200 requests (10 x 20), every tenth: requests 0, 10, ... 190,
    # whose `hours` (the request's number) average 95; the current window is 350-399.
    assert hours.reference["rows"] == 20 and hours.reference["sampled_from"] == 200
    assert hours.reference["start_unix_nano"] == T0
    assert hours.reference["end_unix_nano"] == T0 + 199 * 10**6 + 1  # the 200th request
    assert hours.current.start == T0 + 350 * 10**6
    std = float(np.std(np.arange(0, 200, 10), ddof=1))
    assert hours.scores["shift"] == pytest.approx((374.5 - 95) / std, 1e-6)
    assert drift_settings.DriftSettings().reference == "spread"
    # With less traffic before the current window than the period, it spreads over that.
    add_requests(engine, projects.create_project(engine, "young"), 0, 120)
    drift_settings.update_settings(
        engine, projects.project_id(engine, "young"),
        {"reference_count": 20, "current_count": 50, "min_requests": 20},
    )  # fmt: skip
    (young,) = runner.run("young", "wm", "1", now=NOW).versions
    (hours,) = young.reports
    assert hours.reference["rows"] == 20 and hours.reference["sampled_from"] == 70
    assert hours.reference["end_unix_nano"] == hours.current.start == T0 + 70 * 10**6


def test_the_preceding_reference_is_the_traffic_just_before_the_current_window(
    engine: Engine, tmp_path: Path
) -> None:
    _booking(engine, reference="preceding")
    runner = DriftRunner(
        engine, f"file://{tmp_path / 'mlruns'}", tmp_path, log_to_mlflow=False,
        detectors={"hours": HoursDetector},
    )  # fmt: skip
    (version,) = runner.run("booking", "wm", "1", now=NOW).versions
    (hours,) = version.reports
    # Requests 70-119 against 20-69 (each request starts 1 ms after the one before).
    assert hours.reference["rows"] == 50
    assert hours.reference["start_unix_nano"] == T0 + 20 * 10**6
    assert hours.reference["end_unix_nano"] == hours.current.start == T0 + 70 * 10**6
    assert hours.scores["shift"] == pytest.approx(50 / 14.577, 1e-3)
