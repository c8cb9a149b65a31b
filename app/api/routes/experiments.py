"""Experiments over HTTP: create and stop (admin scope), list and show (read scope).

`GET /v1/experiments/{name}` shows the results, computed again when stale or asked to
(`?refresh=true`; app/experiments/configs.py). A value the experiment does not allow is
answered 422 with the field named; a second running experiment on a stage, or a name taken,
409.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from app.api.deps import Admin, EngineDep, GatewayDep, Reader
from app.api.schemas import ExperimentList, errors
from app.experiments import configs
from app.experiments.read_models import ExperimentDetail, ExperimentOut, ExperimentSpec

router = APIRouter(tags=["experiments"], responses=errors(401, 403))


@router.post(
    "/v1/experiments",
    status_code=201,
    summary="Start an experiment: arms (and shadows) of one stage, its unit and KPIs",
    responses=errors(400, 409),
)
async def create_experiment(
    body: ExperimentSpec, principal: Admin, engine: EngineDep, gateway: GatewayDep
) -> ExperimentOut:
    created = await run_in_threadpool(
        configs.create, engine, principal.project_id, body, f"key:{principal.key_id}"
    )
    if gateway is not None:
        await run_in_threadpool(gateway.experiments_changed, principal.project_id)
    return created


@router.get("/v1/experiments", summary="The project's experiments, newest first")
async def list_experiments(
    principal: Reader,
    engine: EngineDep,
    status: Annotated[
        Literal["running", "stopped"] | None, Query(description="running or stopped")
    ] = None,
) -> ExperimentList:
    items = await run_in_threadpool(
        configs.list_experiments, engine, principal.project_id, status
    )
    return ExperimentList(items=items)


@router.get(
    "/v1/experiments/{name}",
    summary="One experiment: its configuration, the requests each arm served, its results",
    responses=errors(404),
)
async def get_experiment(
    name: str,
    principal: Reader,
    engine: EngineDep,
    refresh: Annotated[
        bool,
        Query(
            description="Compute the results now; otherwise those stored are shown while "
            f"younger than {configs.RESULTS_MAX_AGE_SECONDS:g} s (older ones are computed again)"
        ),
    ] = False,
) -> ExperimentDetail:
    return await run_in_threadpool(
        partial(configs.get, engine, principal.project_id, name, refresh=refresh)
    )


@router.post(
    "/v1/experiments/{name}/stop",
    summary="Stop an experiment: SDKs stop assigning it at their next bundle refresh",
    responses=errors(404, 409),
)
async def stop_experiment(
    name: str, principal: Admin, engine: EngineDep, gateway: GatewayDep
) -> ExperimentOut:
    stopped = await run_in_threadpool(
        configs.stop, engine, principal.project_id, name, f"key:{principal.key_id}"
    )
    if gateway is not None:
        await run_in_threadpool(gateway.experiments_changed, principal.project_id)
    return stopped
