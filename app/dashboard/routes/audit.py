"""Audit: the ledger's state, verifying it (audit scope), signing a head now, and export
bundles: start one (admin), follow its progress, download it (audit scope)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from app.api.deps import AuditKeyDep, EngineDep, ExportJobsDep, ExportJobsOrNoneDep
from app.api.routes.exports import bundle_response
from app.audit.bundle import Scope as ExportScope
from app.audit.exports import ExportJobs, parse_time
from app.audit.ledger import checkpoints
from app.audit.ledger.verify import Report, verify_ledger
from app.dashboard.routes.deps import (
    AdminActionDep,
    AuditActionDep,
    AuditorDep,
    page_router,
)
from app.dashboard.session import Viewer
from app.dashboard.templating import PREFIX, render, render_page
from app.dashboard.views import audit as view
from app.errors import WardenError

router = page_router()


def _page(
    request: Request,
    viewer: Viewer,
    engine: Engine,
    jobs: ExportJobs | None,
    status_code: int = 200,
    report: Report | None = None,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    page = view.audit_page(engine, jobs, viewer.principal, report, error, notice)
    return render_page(request, "audit.html", viewer, page, status_code, title="Audit")


@router.get("/audit")
def audit_page(
    request: Request,
    viewer: AuditorDep,
    engine: EngineDep,
    jobs: ExportJobsOrNoneDep,
    signed: int | None = None,
) -> Response:
    notice = f"Signed a tree head of size {signed:,}." if signed else None
    return _page(request, viewer, engine, jobs, notice=notice)


@router.post("/audit/verify")
async def verify(
    request: Request,
    action: AuditActionDep,
    engine: EngineDep,
    key: AuditKeyDep,
    jobs: ExportJobsOrNoneDep,
) -> Response:
    """Read-only: the audit scope may verify."""
    viewer = action.viewer
    report = await run_in_threadpool(
        verify_ledger, engine, viewer.principal.project, key.public_key()
    )
    return await run_in_threadpool(_page, request, viewer, engine, jobs, report=report)


@router.post("/audit/heads")
async def sign_head(
    request: Request,
    action: AdminActionDep,
    engine: EngineDep,
    key: AuditKeyDep,
    jobs: ExportJobsOrNoneDep,
) -> Response:
    viewer = action.viewer
    try:
        head = await run_in_threadpool(
            checkpoints.sign_now, engine, key, viewer.principal.project_id
        )
    except WardenError as exc:
        return await run_in_threadpool(
            _page, request, viewer, engine, jobs, exc.status_code, error=exc.message
        )
    return RedirectResponse(f"{PREFIX}/audit?signed={head.tree_size}", status_code=303)


@router.post("/audit/exports")
async def start_export(
    request: Request, action: AdminActionDep, engine: EngineDep, jobs: ExportJobsOrNoneDep
) -> Response:
    viewer, form = action.viewer, action.form
    try:
        if jobs is None:
            raise WardenError("exports are not available in this service")
        model = form.get("model", "").strip()
        name, _, version = model.partition("@")
        scope = ExportScope(
            project=viewer.principal.project,
            since=parse_time(form.get("since"), "from"), until=parse_time(form.get("until"), "to"),
            model_name=name or None, model_version=version or None,
            subject=form.get("subject", "").strip() or None,
        )  # fmt: skip
        job = await run_in_threadpool(jobs.submit, scope, viewer.actor)
    except WardenError as exc:
        return await run_in_threadpool(
            _page, request, viewer, engine, jobs, exc.status_code, error=exc.message
        )
    return RedirectResponse(f"{PREFIX}/audit?export={job.id}#exports-h", status_code=303)


@router.get("/audit/exports/{export_id}")
def export_status(
    request: Request, export_id: str, viewer: AuditorDep, jobs: ExportJobsDep
) -> Response:
    """One export's row (loaded again every second while it runs)."""
    job = view.export_status(jobs, viewer.principal, export_id)
    return render(request, "partials/export_status.html", viewer, title="Export", job=job)


@router.get("/audit/exports/{export_id}/download")
def download(export_id: str, viewer: AuditorDep, jobs: ExportJobsDep) -> StreamingResponse:
    return bundle_response(jobs.bundle(viewer.principal.project, export_id))
