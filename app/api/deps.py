"""Dependencies shared by the routes, declared once as typed aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import Engine

from app.audit.erasure import Vault
from app.config import Settings
from app.metrics import Metrics
from app.tenancy.keys import Scope
from app.tenancy.projects import Principal, authenticate


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def get_vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
VaultDep = Annotated[Vault, Depends(get_vault)]


def get_principal(
    request: Request,
    engine: EngineDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    return authenticate(engine, request.app.state.server_secret, authorization)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _requires(scope: Scope) -> object:
    def check(principal: PrincipalDep) -> Principal:
        principal.require(scope)
        return principal

    return Depends(check)


Ingester = Annotated[Principal, _requires(Scope.INGEST)]
Reader = Annotated[Principal, _requires(Scope.READ)]
Admin = Annotated[Principal, _requires(Scope.ADMIN)]
