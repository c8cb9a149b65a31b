"""The FastAPI application factories: `create_app` (the service, for any embedding) and
`create_served_app` (what `warden serve` runs: `uvicorn --factory app.main:create_served_app`).

`settings.role` says what the app does: `api` serves every route and runs no background job;
`worker` runs the background jobs and serves only health and metrics (app/api/routes/health.py);
`all` does both.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app.api.routes import (
    audit,
    drift,
    experiments,
    exports,
    gateway,
    health,
    ingest,
    models,
    policies,
    requests,
    reviews,
    scores,
    tensors,
)
from app.audit.erasure import Vault
from app.audit.exports import ExportJobs
from app.audit.ledger import checkpoints as audit_checkpoints
from app.config import Settings
from app.daemons import PeriodicWorker
from app.dashboard import install as install_dashboard
from app.dashboard.rollups import Roller
from app.deployment_keys import check_shared_secrets
from app.drift.schedule import DriftRunners, Scheduler
from app.errors import WardenError
from app.experiments.results import ResultsWorker
from app.ingest import otlp
from app.ingest.admission import Admission
from app.metrics import Metrics, MetricsMiddleware
from app.registry.lineage import Resolver
from app.store.engine import create_db_engine
from app.store.trace_pages import TraceLayouts
from policies import BUILTIN, PolicySet

log = logging.getLogger("warden")

# google.rpc.Code for each HTTP status OTLP clients may see from us.
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 413: 8, 415: 3, 500: 13, 503: 14}


def create_app(
    settings: Settings | None = None, *, after_startup: Callable[[], None] | None = None
) -> FastAPI:
    """The service; `after_startup` runs once its lifespan has set everything up."""
    settings = settings or Settings()
    metrics = Metrics()
    serves_api = settings.role != "worker"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_db_engine(settings)
        check_shared_secrets(engine, settings, app.state.audit_key)  # PostgreSQL: shared keys
        app.state.engine = engine
        app.state.gateway = None
        audit_checkpoints.record_at_start(engine, app.state.policies)
        app.state.drift = DriftRunners(
            engine, settings.resolved_mlflow_tracking_uri, settings.data_dir, app.state.policies
        )
        app.state.exports = ExportJobs(engine, settings, app.state.audit_key, metrics)
        # The background jobs, each run by the one process of the deployment that leads it
        # (app/daemons.py); an interval of 0 turns a job off, and so does the api role. The
        # api role still makes them: requests queue work for a worker through them (exports).
        jobs: list[PeriodicWorker] = [
            audit_checkpoints.Checkpointer(
                engine, app.state.audit_key, settings.audit_checkpoint_interval,
                app.state.policies, metrics,
            ),
            Resolver(
                engine, settings.resolved_mlflow_tracking_uri, settings.lineage_interval, metrics
            ),
            Roller(engine, settings.dashboard_rollup_interval, metrics),
            Scheduler(app.state.drift, settings.drift_tick, metrics),
            ResultsWorker(
                engine, settings.resolved_mlflow_tracking_uri,
                settings.experiment_results_interval, metrics,
            ),
            app.state.exports,
        ]  # fmt: skip
        workers = [worker for worker in jobs if worker.interval > 0 and settings.role != "api"]
        for worker in workers:
            worker.start()
        if settings.stack and serves_api:
            from app.governance.gateway import Gateway

            app.state.gateway = Gateway(
                settings, engine, app.state.vault, metrics, app.state.policies
            )
        if after_startup is not None:
            after_startup()
        try:
            yield
        finally:
            # Every worker is told first, then each is waited for: shutdown waits for the
            # slowest round in progress, not for the sum of them.
            for worker in reversed(workers):
                worker.stop(join=False)
            for worker in reversed(workers):
                worker.join()
            if app.state.gateway is not None:
                app.state.gateway.close()
            engine.dispose()

    app = FastAPI(
        title="Warden",
        version="0.1.0",
        summary="Observability and governance for hybrid AI inference stacks",
        lifespan=lifespan,
        # The service does not trace itself into the process's OpenTelemetry providers: its
        # own metrics are at /metrics, and an ingest span per export would be pure overhead
        # (and a loop, were the process's exporter pointed at Warden).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # A worker serves no API, so no API description either.
        openapi_url="/openapi.json" if serves_api else None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.admission = Admission(
        settings.ingest_max_pending, settings.ingest_retry_after, metrics
    )
    app.state.server_secret = settings.server_secret()
    # Seals retained inputs at ingest (app/audit/erasure.py); routes take it as `VaultDep`.
    app.state.vault = Vault(app.state.server_secret)
    app.state.trace_layouts = TraceLayouts()
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
    api = (
        ingest, requests, scores, tensors, policies, models, reviews, drift, audit, exports,
        gateway, experiments,
    )  # fmt: skip
    for module in (*api, health) if serves_api else (health,):
        app.include_router(module.router)
    if serves_api:
        install_dashboard(app)
    return app


def create_served_app() -> FastAPI:
    """The service as `warden serve` runs it, in each worker process: `create_app`, plus the
    process-wide settings that only a process serving nothing else may take."""
    return create_app(after_startup=_tune_gc)


def _tune_gc() -> None:
    # Ingest allocates many short-lived objects per batch; with the default threshold the
    # collector runs every few hundred allocations and re-scans the long-lived modules.
    # Freezing what startup created and collecting young objects less often cuts that.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


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
    return _error(request, exc.status_code, exc.message, exc.headers)


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
