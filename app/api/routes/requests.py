"""Query API: requests with filters and cursor pagination, one request, one trace."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from app.api.deps import EngineDep, Reader, SettingsDep
from app.api.schemas import IsoTime, check_stored_time, errors
from app.experiments import shadows
from app.experiments.shadows import ShadowRuns
from app.registry import lineage
from app.registry.read_models import RequestLineage
from app.store import queries
from app.store.engine import read_connection
from app.store.read_models import RequestDetail, RequestPage, Trace

router = APIRouter(tags=["requests"], responses=errors(401, 403))


@router.get(
    "/v1/requests",
    summary="List requests, newest first",
    responses=errors(400),
)
async def list_requests(
    principal: Reader,
    engine: EngineDep,
    since: Annotated[IsoTime | None, Query(description="Start time at or after (ISO 8601)")] = None,
    until: Annotated[IsoTime | None, Query(description="Start time before (ISO 8601)")] = None,
    model_name: Annotated[str | None, Query(description="A model that served any stage")] = None,
    model_version: Annotated[str | None, Query(description="Its version (with model_name)")] = None,
    outcome: str | None = None,
    fingerprint: str | None = None,
    policy_id: Annotated[str | None, Query(description="Requests this policy judged")] = None,
    policy_outcome: Annotated[
        str | None, Query(description="... with this outcome (allow, warn, require_review, deny)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> RequestPage:
    check_stored_time("since", since)
    check_stored_time("until", until)
    flt = queries.RequestFilter(
        since, until, model_name, model_version, outcome, fingerprint, policy_id, policy_outcome
    )
    return await run_in_threadpool(
        queries.list_requests, engine, principal.project_id, flt, limit, cursor
    )


@router.get(
    "/v1/requests/{request_id}",
    summary="One request with its spans, world-model states, decisions and policy evaluations",
    responses=errors(404),
)
async def get_request(request_id: str, principal: Reader, engine: EngineDep) -> RequestDetail:
    return await run_in_threadpool(queries.get_request, engine, principal.project_id, request_id)


@router.get(
    "/v1/requests/{request_id}/lineage",
    summary="The request -> each stage's model version -> its MLflow run -> its datasets",
    responses=errors(404),
)
async def get_lineage(
    request_id: str, principal: Reader, engine: EngineDep, settings: SettingsDep
) -> RequestLineage:
    return await run_in_threadpool(
        lineage.request_lineage, engine, principal.project_id, request_id,
        settings.resolved_mlflow_tracking_uri,
    )  # fmt: skip


@router.get(
    "/v1/traces/{trace_id}",
    summary="Every span of one trace",
    responses=errors(404),
)
async def get_trace(trace_id: str, principal: Reader, engine: EngineDep) -> Trace:
    return await run_in_threadpool(queries.get_trace, engine, principal.project_id, trace_id)


@router.get(
    "/v1/requests/{request_id}/shadows",
    summary="The shadow runs of one request: each shadow arm's decision beside the live one",
    responses=errors(404),
)
async def get_shadows(request_id: str, principal: Reader, engine: EngineDep) -> ShadowRuns:
    def read() -> ShadowRuns:
        with read_connection(engine) as conn:
            return shadows.shadow_runs_for(conn, principal.project_id, request_id)

    return await run_in_threadpool(read)
