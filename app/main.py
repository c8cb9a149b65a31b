"""The FastAPI application factory: `uvicorn --factory app.main:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from app.api.routes import health, ingest, requests
from app.config import Settings
from app.db import create_db_engine
from app.errors import WardenError
from app.ingest import otlp
from app.metrics import Metrics, MetricsMiddleware

# google.rpc.Code for each HTTP status OTLP clients may see from us.
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 413: 8, 415: 3, 500: 13}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = create_db_engine(settings)
        try:
            yield
        finally:
            app.state.engine.dispose()

    app = FastAPI(
        title="Warden",
        version="0.1.0",
        summary="Observability and governance for hybrid AI inference stacks",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.server_secret = settings.server_secret()
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_exception_handler(WardenError, _warden_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for module in (ingest, requests, health):
        app.include_router(module.router)
    return app


async def _warden_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WardenError)
    if request.url.path == "/v1/traces":
        # OTLP/HTTP: errors are a google.rpc.Status in the request's own encoding.
        kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        kind = otlp.PROTOBUF if kind == otlp.PROTOBUF else otlp.JSON
        body = otlp.encode_status(kind, _RPC_CODES.get(exc.status_code, 2), exc.message)
        return Response(body, status_code=exc.status_code, media_type=kind)
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=400)
