"""One drift job: for each monitored model version of a project, plan what to compare, judge
its current traffic against its references with every registered detector (inputs, latent
states, decisions, ...), store a report per kind, log the job to MLflow, hand each report to
the `drift` policies, record the verdict in the audit ledger and alert the project's webhook.

The parts: `plan` (which versions, which windows), `detection` (each window read once, the
detectors fitted and tested), `record` (the store, MLflow, policies, alerts), `results`.
A kind without the data it needs is skipped with the reason, never reported as "none".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from sqlalchemy import Engine

from app.audit import ledger
from app.drift import plan as plans
from app.drift import record
from app.drift import settings as drift_settings
from app.drift.detection import Detection
from app.drift.detectors import registry
from app.drift.detectors.protocol import DetectorFactory
from app.drift.plan import Plan
from app.drift.results import Clock, JobResult, VersionResult
from app.drift.settings import DriftSettings
from app.errors import NotFound
from app.tenancy.projects import project_id as find_project
from policies import PolicySet

Progress = Callable[[str, int, int], None]


class DriftRunner:
    """Runs drift jobs; keeps what references cost to read and fit between runs.

    `detectors` (kind -> detector class) defaults to every registered kind.
    """

    def __init__(
        self,
        engine: Engine,
        tracking_uri: str,
        data_dir: Path,
        policies: PolicySet | None = None,
        log_to_mlflow: bool = True,
        detectors: Mapping[str, DetectorFactory] | None = None,
    ) -> None:
        self.engine = engine
        self.tracking_uri = tracking_uri
        self.policies = policies
        self.log_to_mlflow = log_to_mlflow
        # The reports for people go to MLflow only: not made when nothing logs them.
        self.detection = Detection(
            engine,
            data_dir,
            registry.registered() if detectors is None else detectors,
            artifacts=log_to_mlflow,
        )

    def run(
        self,
        project: str,
        name: str | None = None,
        version: str | None = None,
        progress: Progress | None = None,
        now: int | None = None,
        seed: int = 0,
    ) -> JobResult:
        """Judge the project's monitored versions (or just `name` `version`) now."""
        project_id = find_project(self.engine, project)
        config = drift_settings.load(self.engine, project_id)
        now = now or time.time_ns()
        if name and version:
            targets = [plans.plan(self.engine, project_id, name, version, config, now)]
            if targets[0].traffic is None:
                raise NotFound(f"no traffic of {name} v{version} in project {project!r}")
        elif name or version:
            raise ValueError("name a model and a version together, or neither")
        else:
            targets = [
                plans.plan(self.engine, project_id, model_name, model_version, config, now)
                for model_name, model_version in plans.monitored(
                    self.engine, project_id, config, now
                )
            ]
        step: Progress = progress or (lambda _what, _done, _total: None)
        results = []
        for i, target in enumerate(targets):
            step(f"{target.model_name} v{target.model_version}", i, len(targets))
            results.append(self._version(project, project_id, config, target, seed))
        if progress:
            progress("done", len(targets), len(targets))
        return JobResult(project, results)

    def _version(
        self, project: str, project_id: int, config: DriftSettings, plan: Plan, seed: int
    ) -> VersionResult:
        result = VersionResult(plan.model_name, plan.model_version, str(uuid.uuid4()))
        clock = Clock(result.seconds)
        self.detection.judge(project_id, plan, config, seed, result, clock)
        if not result.reports:
            return result
        if self.log_to_mlflow:
            result.mlflow_run_id = record.log_to_mlflow(self.tracking_uri, project, result)
            clock.lap("mlflow")
        record.store(self.engine, project_id, result)
        if self.policies is not None:
            record.apply_policies(
                self.engine, self.tracking_uri, self.policies, project, project_id, result
            )
        # The verdict, what the policies said and any rollback go to the audit ledger.
        ledger.record_drift(self.engine, project_id, project, result.to_json())
        clock.lap("store_and_judge")
        if config.webhook_url is not None:
            record.alert(project, config, result)
            clock.lap("alert")
        return result
