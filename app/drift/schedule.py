"""Scheduled drift jobs: a thread of the service that runs each project's job when due.

Of the worker processes sharing a data folder only one schedules (the holder of a lock
file), so a job runs once per interval, not once per worker. A project is due when its
`interval_seconds` has passed since its last attempt (its newest drift report after a
restart); a failed job is logged and tried again at the next interval.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, func, select

from app import machine_lock
from app.drift import settings as drift_settings
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


class Scheduler:
    def __init__(self, runners: DriftRunners, tick: float, lock_path: Path) -> None:
        self.runners = runners
        self.tick = tick
        self.lock_path = lock_path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warden-drift", daemon=True)
        self.last_attempt: dict[str, float] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        with contextlib.ExitStack() as stack:
            if not self._take_lock(stack):
                return  # another worker schedules for this machine
            while not self._stop.wait(self.tick):
                self.run_due()

    def run_due(self) -> list[str]:
        """Run every due project's job now; returns the projects run."""
        try:
            due = due_projects(self.runners.engine, self.last_attempt, time.time())
        except Exception:
            log.exception("could not read the drift schedule; trying again")
            return []
        for project in due:
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

    def _take_lock(self, stack: contextlib.ExitStack) -> bool:
        return machine_lock.take(stack, self.lock_path)
