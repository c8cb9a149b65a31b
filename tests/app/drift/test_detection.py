"""Running the detectors over a plan: the traffic reference read once and kept between jobs
until its requests change (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from app.drift import plan as plans
from app.drift import settings as drift_settings
from app.drift.job import DriftRunner
from app.store.engine import write_transaction
from app.store.tables import Request, RequestModel
from app.tenancy import projects
from tests.app.drift.test_windows import T0, add_requests


def _reference_reads(runner: DriftRunner, project_id: int) -> list[Any]:
    config = drift_settings.load(runner.engine, project_id)
    ref = plans.plan(runner.engine, project_id, "wm", "1", config, T0 + 10**12).reference
    assert ref is not None
    return [runner.detection.reference_window(project_id, "wm", "1", ref) for _ in range(2)]


def test_the_reference_window_is_read_once_until_its_requests_change(
    engine: Engine, tmp_path: Path
) -> None:
    project_id = projects.create_project(engine, "booking")
    # A pinned time range: the first 50 ms of traffic, so the first 50 requests.
    since = datetime.fromtimestamp(T0 // 1_000_000_000, UTC)
    drift_settings.update_settings(engine, project_id, {
        "reference_since": since.isoformat(),
        "reference_until": (since + timedelta(milliseconds=50)).isoformat(),
    })  # fmt: skip
    add_requests(engine, project_id, 0, 120)
    runner = DriftRunner(engine, f"file://{tmp_path / 'mlruns'}", tmp_path, log_to_mlflow=False)
    first, second = _reference_reads(runner, project_id)
    assert first is second and first.requests == 50
    # A late request whose start falls inside the pinned reference: read anew, with it.
    with write_transaction(engine) as conn:
        conn.execute(
            insert(RequestModel),
            [{"project_id": project_id, "trace_id": "f" * 32, "role": "world_model",
              "model_name": "wm", "model_version": "1", "start_time_unix_nano": T0 + 1}],
        )  # fmt: skip
        conn.execute(
            insert(Request),
            [{"project_id": project_id, "trace_id": "f" * 32, "root_span_id": "f" * 16,
              "name": "request", "service_name": "test", "start_time_unix_nano": T0 + 1,
              "end_time_unix_nano": T0 + 2, "duration_ms": 0.0, "status": "ok",
              "outcome": "booked", "models": {}, "features": {"hours": -1.0, "room": "r0"}}],
        )  # fmt: skip
    third, _ = _reference_reads(runner, project_id)
    assert third is not first and third.requests == 51
    assert "f" * 32 in third.trace_ids
