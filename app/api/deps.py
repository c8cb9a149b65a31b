"""Dependencies shared by the routes (the API's and the dashboard's), declared once as typed
aliases. The app factory (`app.main`) sets what they hand out on `app.state`; these functions
are the only readers of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, Header, Request
from sqlalchemy import Engine

from app.audit.erasure import Vault
from app.audit.exports import ExportJobs
from app.config import Settings
from app.drift.schedule import DriftRunners
from app.errors import WardenError
from app.governance.gateway import Gateway
from app.ingest.admission import Admission
from app.metrics import Metrics
from app.store.trace_pages import TraceLayouts
from app.tenancy.keys import Scope
from app.tenancy.projects import Principal, authenticate
from policies import PolicySet


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def admit_batch(request: Request) -> AsyncIterator[None]:
    """A place in this process's bound on ingest batches (app/ingest/admission.py), held
    while the batch is read and stored; 503 with Retry-After when none is free. Declared
    before the key is checked, so a refusal costs neither a thread nor a database read."""
    admission: Admission = request.app.state.admission
    async with admission.slot():
        yield


def get_vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


def get_server_secret(request: Request) -> bytes:
    secret: bytes = request.app.state.server_secret
    return secret


def get_policies(request: Request) -> PolicySet:
    """The policy set loaded at start."""
    policies: PolicySet = request.app.state.policies
    return policies


def get_audit_key(request: Request) -> Ed25519PrivateKey:
    """The key that signs the audit ledger's tree heads."""
    key: Ed25519PrivateKey = request.app.state.audit_key
    return key


def get_drift_runners(request: Request) -> DriftRunners:
    """The drift runners (one per MLflow tracking URI and policy set, made on first use)."""
    runners: DriftRunners = request.app.state.drift
    return runners


def get_trace_layouts(request: Request) -> TraceLayouts:
    """The layouts of big traces the service keeps for paging through their spans."""
    layouts: TraceLayouts = request.app.state.trace_layouts
    return layouts


def get_gateway(request: Request) -> Gateway | None:
    """The stack the service runs (`POST /v1/infer`), or None when none is configured."""
    gateway: Gateway | None = request.app.state.gateway
    return gateway


def find_export_jobs(request: Request) -> ExportJobs | None:
    """The export worker, or None in an app whose lifespan (which makes it) has not run."""
    jobs: ExportJobs | None = getattr(request.app.state, "exports", None)
    return jobs


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
AdmittedBatch = Annotated[None, Depends(admit_batch)]
VaultDep = Annotated[Vault, Depends(get_vault)]
ServerSecretDep = Annotated[bytes, Depends(get_server_secret)]
PoliciesDep = Annotated[PolicySet, Depends(get_policies)]
AuditKeyDep = Annotated[Ed25519PrivateKey, Depends(get_audit_key)]
DriftRunnersDep = Annotated[DriftRunners, Depends(get_drift_runners)]
GatewayDep = Annotated[Gateway | None, Depends(get_gateway)]
TraceLayoutsDep = Annotated[TraceLayouts, Depends(get_trace_layouts)]
ExportJobsOrNoneDep = Annotated[ExportJobs | None, Depends(find_export_jobs)]


def get_export_jobs(jobs: ExportJobsOrNoneDep) -> ExportJobs:
    if jobs is None:
        raise WardenError("exports are not available in this service")
    return jobs


ExportJobsDep = Annotated[ExportJobs, Depends(get_export_jobs)]


def get_principal(
    engine: EngineDep,
    server_secret: ServerSecretDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    return authenticate(engine, server_secret, authorization)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _requires(scope: Scope) -> object:
    def check(principal: PrincipalDep) -> Principal:
        principal.require(scope)
        return principal

    return Depends(check)


Ingester = Annotated[Principal, _requires(Scope.INGEST)]
Reader = Annotated[Principal, _requires(Scope.READ)]
Admin = Annotated[Principal, _requires(Scope.ADMIN)]
