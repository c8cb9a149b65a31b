"""Drift over HTTP: run a job now (admin scope), list the stored reports (read scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import Admin, DriftRunnersDep, EngineDep, Reader
from app.api.schemas import IsoTime, check_stored_time, errors
from app.drift import reports
from app.drift.read_models import DriftJobOut, DriftReportPage
from app.errors import BadRequest

router = APIRouter(tags=["drift"], responses=errors(400, 401, 403))


class RunBody(BaseModel):
    model_name: str | None = Field(default=None, description="Judge only this model ...")
    model_version: str | None = Field(default=None, description="... at this version")
    seed: int = Field(default=0, description="Seed of the latent test's random features")


@router.post(
    "/v1/drift/run",
    summary="Run a drift job now: inputs, latent states and decisions of the monitored "
    "world-model versions (or one version), stored, judged by the drift policies",
    responses=errors(404),
)
async def run(body: RunBody, principal: Admin, runners: DriftRunnersDep) -> DriftJobOut:
    # An empty name counts as none, as the runner reads it.
    if bool(body.model_name) != bool(body.model_version):
        raise BadRequest("give model_name and model_version together, or neither")
    runner = await run_in_threadpool(runners.get)
    result = await run_in_threadpool(
        runner.run, principal.project, body.model_name, body.model_version, None, None, body.seed
    )
    return DriftJobOut.model_validate(result.to_json())


@router.get("/v1/drift", summary="Drift reports, newest first, with filters")
async def list_reports(
    principal: Reader,
    engine: EngineDep,
    model_name: str | None = None,
    model_version: str | None = None,
    kind: Annotated[str | None, Query(description="input, latent or decision")] = None,
    verdict: Annotated[str | None, Query(description="none, warn or drift")] = None,
    since: Annotated[IsoTime | None, Query(description="Made at or after (ISO 8601)")] = None,
    job_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=reports.MAX_PAGE)] = 50,
    cursor: Annotated[
        str | None, Query(pattern="^[0-9]+$", description="`next_cursor` of the previous page")
    ] = None,
) -> DriftReportPage:
    check_stored_time("since", since)
    if cursor is not None and not cursor.isdigit():
        raise BadRequest("cursor must be the next_cursor of a previous page")
    return await run_in_threadpool(
        reports.list_reports, engine, principal.project_id, model_name, model_version, kind,
        verdict, since, job_id, limit, int(cursor) if cursor else None,
    )  # fmt: skip
