"""Query API: requests with filters and cursor pagination, one request, one trace."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from app.api.deps import EngineDep, Reader, SettingsDep
from app.api.schemas import RequestDetail, RequestPage, Trace
from app.registry import lineage
from app.store import queries

router = APIRouter(tags=["requests"])


@router.get("/v1/requests", response_model=RequestPage, summary="List requests, newest first")
async def list_requests(
    principal: Reader,
    engine: EngineDep,
    since: Annotated[
        datetime | None, Query(description="Start time at or after (ISO 8601)")
    ] = None,
    until: Annotated[datetime | None, Query(description="Start time before (ISO 8601)")] = None,
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
) -> Any:
    flt = queries.RequestFilter(
        since, until, model_name, model_version, outcome, fingerprint, policy_id, policy_outcome
    )
    return await run_in_threadpool(
        queries.list_requests, engine, principal.project_id, flt, limit, cursor
    )


@router.get(
    "/v1/requests/{request_id}",
    response_model=RequestDetail,
    summary="One request with its spans, world-model states, decisions and policy evaluations",
)
async def get_request(request_id: str, principal: Reader, engine: EngineDep) -> Any:
    return await run_in_threadpool(queries.get_request, engine, principal.project_id, request_id)


@router.get(
    "/v1/requests/{request_id}/lineage",
    summary="The request -> each stage's model version -> its MLflow run -> its datasets",
)
async def get_lineage(
    request_id: str, principal: Reader, engine: EngineDep, settings: SettingsDep
) -> Any:
    return await run_in_threadpool(
        lineage.request_lineage, engine, principal.project_id, request_id,
        settings.resolved_mlflow_tracking_uri,
    )  # fmt: skip


@router.get("/v1/traces/{trace_id}", response_model=Trace, summary="Every span of one trace")
async def get_trace(trace_id: str, principal: Reader, engine: EngineDep) -> Any:
    return await run_in_threadpool(queries.get_trace, engine, principal.project_id, trace_id)
