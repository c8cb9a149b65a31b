"""Drift: per model version, scores over time per input feature, latent layer and decision
test; a run's Evidently report inline, from MLflow, in a sandboxed frame."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from app.api.deps import EngineDep, SettingsDep
from app.dashboard.routes.deps import ViewerDep, page_router
from app.dashboard.templating import render_page
from app.dashboard.views import drift

router = page_router()
# The report is Evidently's own page, scripts inline: it runs in a frame sandboxed without
# `allow-same-origin` (an opaque origin: no cookies, no access to the dashboard), and the
# answer itself carries the sandbox too, should it be opened directly.
REPORT_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; frame-ancestors 'self'"
)


@router.get("/drift")
def drift_page(
    request: Request,
    viewer: ViewerDep,
    engine: EngineDep,
    model: str | None = None,
    report: str | None = None,
) -> Response:
    page = drift.drift_page(engine, viewer.principal.project_id, model, report)
    return render_page(request, "drift.html", viewer, page, title="Drift")


@router.get("/drift/runs/{run_id}/inputs.html")
def evidently_report(
    run_id: str, viewer: ViewerDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    """Evidently's input-drift report of a drift run, fetched from MLflow."""
    html = drift.evidently_report(
        engine, settings.resolved_mlflow_tracking_uri, viewer.principal.project_id, run_id
    )
    return HTMLResponse(
        html,
        headers={"Content-Security-Policy": REPORT_CSP, "X-Frame-Options": "SAMEORIGIN",
                 "Cache-Control": "private, max-age=300"},
    )  # fmt: skip
