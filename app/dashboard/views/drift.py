"""The drift page: per model version, scores over time per input feature, latent layer and
decision test, and its drift jobs; and a job's Evidently report, from MLflow."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from app.dashboard.views import drift_series
from app.dashboard.views.charts import Chart
from app.dashboard.views.drift_series import DriftJob
from app.drift import reports
from app.errors import NotFound
from app.registry import lineage, model_versions

HISTORY = 200  # reports read per version
ARTIFACT = "drift/inputs.html"  # Evidently's report, as the drift job logs it to MLflow


@dataclass(frozen=True)
class DriftSection:
    """One model version's drift."""

    key: str  # name@version
    name: str
    version: str
    role: str | None
    aliases: list[str]
    charts: dict[str, Chart]  # per kind judged
    jobs: list[DriftJob]  # newest first

    @property
    def captions(self) -> dict[str, str]:
        """How to read each chart's axes, per kind."""
        return {kind: drift_series.caption(c) for kind, c in self.charts.items()}


@dataclass(frozen=True)
class DriftPage:
    sections: list[DriftSection]
    model: str  # the version chosen (name@version), or "" for every judged one
    report: str | None  # the MLflow run whose Evidently report is shown
    all_versions: list[str]  # every version seen, name@version


def drift_page(
    engine: Engine, project_id: int, model: str | None = None, report: str | None = None
) -> DriftPage:
    """Every judged version (or only `model`, judged or not), with the Evidently report of
    MLflow run `report` if one is asked for; 404 for an unknown version or run."""
    sections = []
    for v in model_versions.seen_versions(engine, project_id):
        key = f"{v.name}@{v.version}"
        if model and key != model:
            continue
        found = reports.list_reports(engine, project_id, v.name, v.version, limit=HISTORY)
        if not found.items and not model:
            continue
        sections.append(
            DriftSection(key, v.name, v.version, v.role, v.aliases,
                         drift_series.charts(found.items), drift_series.jobs(found.items))
        )  # fmt: skip
    if model and not sections:
        raise NotFound(f"no model version {model!r} in this project")
    if report and not reports.run_known(engine, project_id, report):
        raise NotFound(f"no drift run {report!r} in this project")
    versions = model_versions.seen_versions(engine, project_id)
    return DriftPage(sections, model or "", report, [f"{v.name}@{v.version}" for v in versions])


def evidently_report(engine: Engine, tracking_uri: str, project_id: int, run_id: str) -> str:
    """Evidently's input-drift report (HTML) of a drift run of the project, from MLflow."""
    if not run_id.isalnum() or not reports.run_known(engine, project_id, run_id):
        raise NotFound(f"no drift run {run_id!r} in this project")
    client = lineage.mlflow_client(tracking_uri)
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="warden-evidently-") as folder:
        try:
            path = client.download_artifacts(run_id, ARTIFACT, folder)
        except (MlflowException, OSError) as exc:
            raise NotFound(
                f"MLflow has no {ARTIFACT} for run {run_id}: {str(exc).splitlines()[0]}"
            ) from None
        return Path(path).read_text(encoding="utf-8", errors="replace")
