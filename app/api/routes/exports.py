"""Audit exports over HTTP: start one (a job queued in the database), follow it, download
the bundle (fetched from MLflow's artifact store by whichever process is asked).

The `audit` scope suffices (and `admin`, which grants everything): exporting changes nothing
but the ledger's own `export.produced` record.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import ExportJobsDep, PrincipalDep
from app.api.schemas import ExportList, binary, errors
from app.audit.bundle import Scope, parse_model
from app.audit.exports import BundleDownload, parse_time
from app.audit.read_models import ExportStatus
from app.tenancy.keys import Scope as KeyScope
from app.tenancy.projects import Principal

router = APIRouter(tags=["exports"], responses=errors(401, 403))


def _admin(principal: PrincipalDep) -> Principal:
    principal.require(KeyScope.ADMIN)
    return principal


def _auditor(principal: PrincipalDep) -> Principal:
    principal.require(KeyScope.AUDIT)
    return principal


Auditor = Annotated[Principal, Depends(_auditor)]
# Producing an export writes (a job, a bundle, an `export.produced` ledger event): the
# `audit` scope reads everything, including finished exports, and acts on nothing.
Admin = Annotated[Principal, Depends(_admin)]


class ExportBody(BaseModel):
    from_: str | None = Field(
        default=None, alias="from", description="Start of the period (ISO 8601, inclusive)"
    )
    to: str | None = Field(default=None, description="End of the period (ISO 8601, exclusive)")
    model: str | None = Field(default=None, description="`name` or `name/version`")
    subject: str | None = Field(default=None, description="One subject (or its pseudonym)")


@router.post(
    "/v1/exports",
    status_code=202,
    summary="Start an export bundle of a period (and a model, a subject): a background job",
    responses=errors(400),
)
async def start_export(body: ExportBody, principal: Admin, jobs: ExportJobsDep) -> ExportStatus:
    name, version = parse_model(body.model)
    scope = Scope(
        project=principal.project,
        since=parse_time(body.from_, "from"),
        until=parse_time(body.to, "to"),
        model_name=name,
        model_version=version,
        subject=body.subject,
    )
    return await run_in_threadpool(jobs.submit, scope, f"key:{principal.key_id}")


@router.get("/v1/exports", summary="This project's export jobs, newest first")
async def list_exports(principal: Auditor, jobs: ExportJobsDep) -> ExportList:
    found = await run_in_threadpool(jobs.list, principal.project)
    return ExportList(items=found)


@router.get(
    "/v1/exports/{export_id}",
    summary="An export job's status and progress",
    responses=errors(404),
)
async def get_export(export_id: str, principal: Auditor, jobs: ExportJobsDep) -> ExportStatus:
    return await run_in_threadpool(jobs.get, principal.project, export_id)


@router.get(
    "/v1/exports/{export_id}/download",
    summary="The bundle (zip) of a finished export; 409 while it runs",
    response_class=StreamingResponse,
    responses={
        200: binary("application/zip", "The bundle: docs/audit.md describes its files"),
        **errors(404, 409),
    },
)
async def download_export(
    export_id: str, principal: Auditor, jobs: ExportJobsDep
) -> StreamingResponse:
    download = await run_in_threadpool(jobs.bundle, principal.project, export_id)
    return bundle_response(download)


def bundle_response(download: BundleDownload) -> StreamingResponse:
    """The bundle as a zip attachment, streamed from its (already unlinked) file."""
    return StreamingResponse(
        download.chunks(),
        media_type="application/zip",
        headers={
            "Content-Length": str(download.size),
            "Content-Disposition": f'attachment; filename="{download.filename}"',
        },
    )
