"""Liveness, readiness and Prometheus metrics: the routes every role serves (a `worker`
process serves only these, so healthchecks and Prometheus reach it like an API replica)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from app.api.deps import EngineDep, MetricsDep
from app.api.schemas import Health, Unavailable
from app.store.engine import read_connection

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="The database is reachable",
    responses={503: {"model": Unavailable, "description": "the database is not reachable"}},
)
async def readyz(engine: EngineDep) -> Response:
    def probe() -> None:
        with read_connection(engine) as conn:
            conn.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(probe)
    except SQLAlchemyError as exc:
        return JSONResponse({"status": "unavailable", "reason": str(exc).splitlines()[0]}, 503)
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition format",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(m: MetricsDep) -> Response:
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)
