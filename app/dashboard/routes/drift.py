"""Drift: per model version, scores over time per input feature, latent layer and decision
test; a run's Evidently report inline, from MLflow, in a sandboxed frame."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from app.dashboard import catalog, drift_series
from app.dashboard.routes.deps import ViewerDep, page_router
from app.dashboard.templating import render
from app.drift import reports
from app.errors import NotFound
from app.registry import lineage

router = page_router()
HISTORY = 200
ARTIFACT = "drift/inputs.html"
# The report is Evidently's own page, scripts inline: it runs in a frame sandboxed without
# `allow-same-origin` (an opaque origin: no cookies, no access to the dashboard), and the
# answer itself carries the sandbox too, should it be opened directly.
REPORT_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; frame-ancestors 'self'"
)


@router.get("/drift")
def drift_page(
    request: Request, viewer: ViewerDep, model: str | None = None, report: str | None = None
) -> Response:
    engine = request.app.state.engine
    pid = viewer.principal.project_id
    sections: list[dict[str, Any]] = []
    for v in catalog.versions(engine, pid):
        key = f"{v['name']}@{v['version']}"
        if model and key != model:
            continue
        found = reports.list_reports(engine, pid, v["name"], v["version"], limit=HISTORY)
        if not found.items and not model:
            continue
        sections.append({
            "key": key, "name": v["name"], "version": v["version"], "role": v["role"],
            "aliases": v["aliases"], "charts": drift_series.charts(found.items),
            "jobs": drift_series.jobs(found.items),
        })  # fmt: skip
    if model and not sections:
        raise NotFound(f"no model version {model!r} in this project")
    if report and not catalog.drift_run_known(engine, pid, report):
        raise NotFound(f"no drift run {report!r} in this project")
    return render(
        request, "drift.html", viewer, title="Drift", sections=sections, model=model or "",
        report=report, all_versions=[f"{v['name']}@{v['version']}"
                                     for v in catalog.versions(engine, pid)],
    )  # fmt: skip


@router.get("/drift/runs/{run_id}/inputs.html")
def evidently_report(request: Request, run_id: str, viewer: ViewerDep) -> Response:
    """Evidently's input-drift report of a drift run, fetched from MLflow."""
    if not run_id.isalnum() or not catalog.drift_run_known(
        request.app.state.engine, viewer.principal.project_id, run_id
    ):
        raise NotFound(f"no drift run {run_id!r} in this project")
    from mlflow.exceptions import MlflowException

    client = lineage.mlflow_client(request.app.state.settings.resolved_mlflow_tracking_uri)
    with tempfile.TemporaryDirectory(prefix="warden-evidently-") as folder:
        try:
            path = client.download_artifacts(run_id, ARTIFACT, folder)
        except (MlflowException, OSError) as exc:
            raise NotFound(
                f"MLflow has no {ARTIFACT} for run {run_id}: {str(exc).splitlines()[0]}"
            ) from None
        html = Path(path).read_text(encoding="utf-8", errors="replace")
    return HTMLResponse(
        html,
        headers={"Content-Security-Policy": REPORT_CSP, "X-Frame-Options": "SAMEORIGIN",
                 "Cache-Control": "private, max-age=300"},
    )  # fmt: skip
