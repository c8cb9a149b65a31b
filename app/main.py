"""The FastAPI application factory: `uvicorn --factory app.main:create_app`."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app.api.routes import (
    audit,
    drift,
    exports,
    gateway,
    health,
    ingest,
    models,
    policies,
    requests,
    reviews,
    tensors,
)
from app.audit.erasure import Vault
from app.audit.exports import ExportJobs
from app.audit.ledger import checkpoints as audit_checkpoints
from app.config import Settings
from app.dashboard import install as install_dashboard
from app.dashboard.rollups import Roller
from app.drift.schedule import DriftRunners, Scheduler
from app.errors import WardenError
from app.ingest import otlp
from app.metrics import Metrics, MetricsMiddleware
from app.registry.lineage import Resolver
from app.store.engine import create_db_engine
from policies import BUILTIN, PolicySet

log = logging.getLogger("warden")

# google.rpc.Code for each HTTP status OTLP clients may see from us.
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 413: 8, 415: 3, 500: 13, 503: 14}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = create_db_engine(settings)
        app.state.gateway = None
        signer = audit_checkpoints.start(
            app.state.engine, settings, app.state.audit_key, app.state.policies
        )
        resolver = None
        if settings.lineage_interval > 0:
            resolver = Resolver(
                app.state.engine,
                settings.resolved_mlflow_tracking_uri,
                settings.lineage_interval,
                settings.data_dir / "lineage.lock",
            )
            resolver.start()
        runners = DriftRunners(
            app.state.engine,
            settings.resolved_mlflow_tracking_uri,
            settings.data_dir,
            app.state.policies,
        )
        app.state.drift = runners
        app.state.exports = ExportJobs(app.state.engine, settings, app.state.audit_key)
        roller = None
        if settings.dashboard_rollup_interval > 0:
            roller = Roller(
                app.state.engine,
                settings.dashboard_rollup_interval,
                settings.data_dir / "dashboard-rollup.lock",
            )
            roller.start()
        scheduler = None
        if settings.drift_tick > 0:
            scheduler = Scheduler(runners, settings.drift_tick, settings.data_dir / "drift.lock")
            scheduler.start()
        if settings.stack:
            from app.governance.gateway import Gateway

            app.state.gateway = Gateway(
                settings, app.state.engine, app.state.vault, metrics, app.state.policies
            )
        # Ingest allocates many short-lived objects per batch; with the default threshold the
        # collector runs every few hundred allocations and re-scans the long-lived modules.
        # Freezing what startup created and collecting young objects less often cuts that.
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        try:
            yield
        finally:
            if resolver is not None:
                resolver.stop()
            if roller is not None:
                roller.stop()
            if scheduler is not None:
                scheduler.stop()
            if signer is not None:
                signer.stop()
            app.state.exports.stop()
            if app.state.gateway is not None:
                app.state.gateway.close()
            app.state.engine.dispose()

    app = FastAPI(
        title="Warden",
        version="0.1.0",
        summary="Observability and governance for hybrid AI inference stacks",
        lifespan=lifespan,
        # The service does not trace itself into the process's OpenTelemetry providers: its
        # own metrics are at /metrics, and an ingest span per export would be pure overhead
        # (and a loop, were the process's exporter pointed at Warden).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.server_secret = settings.server_secret()
    # Seals retained inputs at ingest (app/audit/erasure.py); routes take it as `VaultDep`.
    app.state.vault = Vault(app.state.server_secret)
    # Signs the audit ledger's tree heads; made on first use in the data folder.
    app.state.audit_key = audit_checkpoints.signing_key(settings)
    # Loaded at start: a broken policy file stops the service here, not on a request.
    app.state.policies = PolicySet.load_dir(settings.policies_dir or BUILTIN)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_exception_handler(WardenError, _warden_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    # Database errors get their own handler (not only the catch-all): a catch-all handler
    # runs in Starlette's outermost middleware, which re-raises, and uvicorn then drops the
    # client's keep-alive connection.
    app.add_exception_handler(SQLAlchemyError, _internal_error)
    app.add_exception_handler(Exception, _internal_error)
    for module in (
        ingest, requests, tensors, policies, models, reviews, drift, audit, exports, gateway,
        health,
    ):
        app.include_router(module.router)
    install_dashboard(app)
    return app


def _error(
    request: Request, status_code: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    if request.url.path == "/v1/traces":
        # OTLP/HTTP: errors are a google.rpc.Status in the request's own encoding.
        kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        kind = otlp.PROTOBUF if kind == otlp.PROTOBUF else otlp.JSON
        body = otlp.encode_status(kind, _RPC_CODES.get(status_code, 2), message)
        return Response(body, status_code=status_code, media_type=kind, headers=headers)
    return JSONResponse({"detail": message}, status_code=status_code, headers=headers)


async def _warden_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WardenError)
    return _error(request, exc.status_code, exc.message)


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    # 503 with Retry-After: OTLP exporters retry it, so a database blip loses nothing.
    log.error("database unavailable on %s: %s", request.url.path, str(exc).splitlines()[0])
    return _error(
        request, 503, "database unavailable; nothing was stored, retry", {"Retry-After": "1"}
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s", request.url.path, exc_info=exc)
    return _error(request, 500, "internal error; nothing was stored")


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=400)
