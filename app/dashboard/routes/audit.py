"""Audit: the ledger's state, verifying it (audit scope), signing a head now, and export
bundles: start one (admin), follow its progress, download it (audit scope)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from app.audit.bundle import Scope as ExportScope
from app.audit.exports import ExportJobs, parse_time
from app.audit.ledger import checkpoints
from app.dashboard import catalog, ledger_status
from app.dashboard.routes.deps import ViewerDep, page_router
from app.dashboard.session import Viewer, acting
from app.dashboard.templating import PREFIX, render
from app.errors import WardenError
from app.tenancy.keys import Scope

router = page_router()


def _jobs(request: Request) -> ExportJobs | None:
    return getattr(request.app.state, "exports", None)


def _export_jobs(request: Request) -> ExportJobs:
    """The service's export jobs, or a clear error where it runs none."""
    jobs = _jobs(request)
    if jobs is None:
        raise WardenError("exports are not available in this service")
    return jobs


def _page(request: Request, viewer: Viewer, status_code: int = 200, **extra: Any) -> Response:
    viewer.principal.require(Scope.AUDIT)
    engine = request.app.state.engine
    pid = viewer.principal.project_id
    jobs = _jobs(request)
    context: dict[str, Any] = {
        "ledger": ledger_status.status(engine, pid),
        "exports": jobs.list(viewer.principal.project) if jobs else None,
        "names": sorted({v["name"] for v in catalog.versions(engine, pid)}),
        "report": None, "error": None, "notice": None, **extra,
    }  # fmt: skip
    return render(request, "audit.html", viewer, status_code=status_code, title="Audit",
                  **context)  # fmt: skip


@router.get("/audit")
def audit_page(request: Request, viewer: ViewerDep, signed: int | None = None) -> Response:
    notice = f"Signed a tree head of size {signed:,}." if signed else None
    return _page(request, viewer, notice=notice)


@router.post("/audit/verify")
async def verify(request: Request) -> Response:
    """Read-only: the audit scope may verify."""
    viewer, _ = await acting(request, Scope.AUDIT)
    report = await run_in_threadpool(
        ledger_status.verify, request.app.state.engine, viewer.principal.project,
        request.app.state.audit_key.public_key(),
    )  # fmt: skip
    return await run_in_threadpool(_page, request, viewer, report=report)


@router.post("/audit/heads")
async def sign_head(request: Request) -> Response:
    viewer, _ = await acting(request)
    try:
        head = await run_in_threadpool(
            checkpoints.sign_now, request.app.state.engine, request.app.state.audit_key,
            viewer.principal.project_id,
        )  # fmt: skip
    except WardenError as exc:
        return await run_in_threadpool(_page, request, viewer, exc.status_code, error=exc.message)
    return RedirectResponse(f"{PREFIX}/audit?signed={head.tree_size}", status_code=303)


@router.post("/audit/exports")
async def start_export(request: Request) -> Response:
    viewer, form = await acting(request)
    try:
        jobs = _export_jobs(request)
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
        return await run_in_threadpool(_page, request, viewer, exc.status_code, error=exc.message)
    return RedirectResponse(f"{PREFIX}/audit?export={job['id']}#exports-h", status_code=303)


@router.get("/audit/exports/{export_id}")
def export_status(request: Request, export_id: str, viewer: ViewerDep) -> Response:
    """One export's row (loaded again every second while it runs)."""
    viewer.principal.require(Scope.AUDIT)
    jobs = _export_jobs(request)
    job = jobs.get(viewer.principal.project, export_id)
    return render(request, "partials/export_status.html", viewer, title="Export", job=job)


@router.get("/audit/exports/{export_id}/download")
def download(request: Request, export_id: str, viewer: ViewerDep) -> Response:
    viewer.principal.require(Scope.AUDIT)
    jobs = _export_jobs(request)
    path = jobs.bundle(viewer.principal.project, export_id)
    return FileResponse(
        path, media_type="application/zip",
        filename=f"warden-export-{viewer.principal.project}-{export_id}.zip",
    )  # fmt: skip
