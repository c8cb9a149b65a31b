"""Scheduled drift jobs: a thread of the service that runs each project's job when due.

Of all the processes of a deployment only one schedules (the leader of the `drift-schedule`
job, app/daemons.py), so a job runs once per interval, not once per process or machine. A
project is due when its
`interval_seconds` has passed since its last attempt (its newest drift report after a
restart); a failed job is logged and tried again at the next interval.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, func, select

from app.daemons import PeriodicWorker
from app.drift import settings as drift_settings
from app.metrics import Metrics
from app.store import leadership
from app.store.engine import read_connection
from app.store.tables import DriftReport, Project
from policies import PolicySet

if TYPE_CHECKING:
    from app.drift.job import DriftRunner

log = logging.getLogger("warden.drift")


class DriftRunners:
    """The service's one `DriftRunner`, made on first use: drift needs pandas, torch, scipy
    and Evidently, which a worker that only ingests should not carry."""

    def __init__(
        self, engine: Engine, tracking_uri: str, data_dir: Path, policies: PolicySet | None
    ) -> None:
        self.engine = engine
        self._args = (tracking_uri, data_dir, policies)
        self._runner: DriftRunner | None = None
        self._lock = threading.Lock()

    def get(self) -> DriftRunner:
        with self._lock:
            if self._runner is None:
                from app.drift.job import DriftRunner

                tracking_uri, data_dir, policies = self._args
                self._runner = DriftRunner(self.engine, tracking_uri, data_dir, policies)
            return self._runner


def due_projects(engine: Engine, last_attempt: dict[str, float], now: float) -> list[str]:
    """Projects whose drift interval has passed since their last attempt or report."""
    with read_connection(engine) as conn:
        projects = conn.execute(select(Project.id, Project.name)).all()
        newest = dict(
            conn.execute(
                select(DriftReport.project_id, func.max(DriftReport.created_at)).group_by(
                    DriftReport.project_id
                )
            ).all()
        )
    due = []
    for project_id, name in projects:
        interval = drift_settings.load(engine, project_id).interval_seconds
        if interval <= 0:
            continue
        last = last_attempt.get(name)
        if last is None and newest.get(project_id) is not None:
            last = newest[project_id].timestamp()
        if last is None or now - last >= interval:
            due.append(name)
    return due


class Scheduler(PeriodicWorker):
    """Every `interval` seconds (`WARDEN_DRIFT_TICK`), runs the jobs of the projects due."""

    def __init__(
        self, runners: DriftRunners, interval: float, metrics: Metrics | None = None
    ) -> None:
        name = "drift-schedule"
        super().__init__(name, interval, leadership.for_engine(runners.engine, name), metrics)
        self.runners = runners
        # In memory: a new leader falls back on each project's newest report.
        self.last_attempt: dict[str, float] = {}

    def tick(self) -> None:
        self.run_due()

    def run_due(self) -> list[str]:
        """Run every due project's job now; returns the projects due."""
        due = due_projects(self.runners.engine, self.last_attempt, time.time())
        for project in due:
            if self.stopping:
                break
            self.last_attempt[project] = time.time()
            try:
                result = self.runners.get().run(project)
            except Exception:
                log.exception("scheduled drift job of project %r failed", project)
                continue
            for version in result.versions:
                log.info(
                    "drift %s %s v%s: %s", project, version.model_name,
                    version.model_version, version.verdict,
                )  # fmt: skip
        return due
