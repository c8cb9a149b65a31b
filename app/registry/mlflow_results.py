"""Warden's own results as MLflow runs, where a data scientist already looks.

A drift report or an audit export is logged as one run in the `warden` experiment, tagged with
the model name and version it concerns (`warden.model.name`, `warden.model.version`) and the
kind of result (`warden.result`), with its figures as metrics, its settings as params and its
files as artifacts. Everything goes through the MLflow client, so it works the same on the
embedded SQLite store and against an `mlflow server` over HTTP; MLflow's database is never
written directly.
"""

from __future__ import annotations

import math
import posixpath
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.registry.lineage import mlflow_client

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

EXPERIMENT = "warden"
RESULT_TAG = "warden.result"
MODEL_NAME_TAG = "warden.model.name"
MODEL_VERSION_TAG = "warden.model.version"
PROJECT_TAG = "warden.project"


@dataclass(frozen=True)
class Result:
    """One Warden result to log: `kind` is e.g. `drift` or `export`.

    `artifacts` maps a path inside the run's artifacts (`report/drift.html`) to its content;
    `files` maps one to a file on disk of the same name (`export/bundle.zip`), uploaded as it
    is rather than read into memory.
    """

    kind: str
    project: str
    model_name: str = ""
    model_version: str = ""
    name: str = ""
    params: Mapping[str, str | int | float] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    artifacts: Mapping[str, bytes | str] = field(default_factory=dict)
    files: Mapping[str, Path] = field(default_factory=dict)


def artifact_location(tracking_uri: str) -> str | None:
    """Artifacts beside an embedded SQLite store (`mlartifacts/`); a server decides its own.

    >>> artifact_location("sqlite:////tmp/x/mlflow.db")
    'file:///tmp/x/mlartifacts'
    >>> artifact_location("http://127.0.0.1:5000") is None
    True
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return (Path(tracking_uri[len(prefix) :]).parent / "mlartifacts").resolve().as_uri()


def experiment_id(client: MlflowClient, tracking_uri: str) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return str(found.experiment_id)
    from mlflow.exceptions import MlflowException

    try:
        return str(
            client.create_experiment(EXPERIMENT, artifact_location=artifact_location(tracking_uri))
        )
    except MlflowException:
        # Another worker created it between the lookup and the create.
        again = client.get_experiment_by_name(EXPERIMENT)
        if again is None:
            raise
        return str(again.experiment_id)


def log_result(tracking_uri: str, result: Result) -> str:
    """Log `result` as a finished run of the `warden` experiment; returns the run id.

    Non-finite metrics (a p-value that could not be computed) are left out: MLflow stores
    them, but its UI and search compare them badly.
    """
    client = mlflow_client(tracking_uri)
    from mlflow.entities import Metric, Param

    tags = {
        RESULT_TAG: result.kind,
        PROJECT_TAG: result.project,
        **({MODEL_NAME_TAG: result.model_name} if result.model_name else {}),
        **({MODEL_VERSION_TAG: result.model_version} if result.model_version else {}),
        **result.tags,
    }
    run = client.create_run(
        experiment_id(client, tracking_uri),
        run_name=result.name or f"{result.kind}-{result.model_name}-v{result.model_version}",
        tags=tags,
    )
    run_id: str = run.info.run_id
    status = "FAILED"
    try:
        now = int(run.info.start_time)
        metrics = [
            Metric(key, float(value), now, 0)
            for key, value in result.metrics.items()
            if math.isfinite(float(value))
        ]
        params = [Param(key, str(value)) for key, value in result.params.items()]
        # log_batch takes at most 1,000 metrics and 100 params per call.
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start : start + 1000])
        for start in range(0, len(params), 100):
            client.log_batch(run_id, params=params[start : start + 100])
        if result.artifacts:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                for relative, content in result.artifacts.items():
                    target = root / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if isinstance(content, str):
                        target.write_text(content, encoding="utf-8")
                    else:
                        target.write_bytes(content)
                client.log_artifacts(run_id, str(root))
        for relative, source in result.files.items():
            folder, name = posixpath.split(relative)
            if name != source.name:
                raise ValueError(f"{source} cannot be logged as {relative}: the names differ")
            client.log_artifact(run_id, str(source), folder or None)
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
    return run_id


def find_results(
    tracking_uri: str, kind: str, model_name: str = "", model_version: str = ""
) -> list[str]:
    """Run ids of logged results of `kind` (optionally for one model version), newest first."""
    client = mlflow_client(tracking_uri)
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is None:
        return []
    clauses = [f"tags.`{RESULT_TAG}` = '{kind}'"]
    if model_name:
        clauses.append(f"tags.`{MODEL_NAME_TAG}` = '{model_name}'")
    if model_version:
        clauses.append(f"tags.`{MODEL_VERSION_TAG}` = '{model_version}'")
    runs = client.search_runs(
        [found.experiment_id], " and ".join(clauses), order_by=["attributes.start_time DESC"]
    )
    return [r.info.run_id for r in runs]
