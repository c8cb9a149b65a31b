"""The models page: the versions seen in traffic and those registered in MLflow without
traffic, with their aliases (read from MLflow's registry as the page is drawn), traffic,
decision KPIs and drift history; promotions and rollbacks per model; the lineage graph; the
alias moves asked for; and the outcome of a promotion or a rollback just asked for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from app.dashboard.views.lineage_graph import Graph, build
from app.dashboard.views.version_kpis import VersionKpis, version_kpis
from app.drift import reports
from app.drift.read_models import StoredDriftReport
from app.governance import deployments
from app.governance.deploy import AliasMove
from app.governance.read_models import StoredMove
from app.registry import model_versions
from app.registry.read_models import SeenVersion, VersionTraffic
from app.registry.registered import (
    REGISTERED,
    RegisteredModel,
    registered_models,
    with_registered,
)
from app.store.engine import read_connection
from app.store.genai import usage_per_version

DRIFT_HISTORY = 30  # reports shown per version


@dataclass(frozen=True)
class ModelsPage:
    versions: list[SeenVersion]
    traffic: dict[tuple[str, str], VersionTraffic]
    drift: dict[tuple[str, str], list[StoredDriftReport]]  # newest first
    graph: Graph
    names: list[str]  # model names, the world model's first
    moves: list[StoredMove]
    kpis: VersionKpis  # decision KPIs per version, promotions and rollbacks per model
    # What MLflow's registry holds now of these models; None when it could not be read (the
    # aliases shown are then the model index's copy).
    registry: dict[str, RegisteredModel] | None = None
    # The versions MLflow has registered: the only ones an alias can move to.
    promotable: frozenset[tuple[str, str]] = frozenset()
    result: AliasMove | None = None
    error: str | None = None
    # Language-model calls, tokens and cost of the requests each version served.
    usage: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def _unseen(name: str, version: str, role: str | None, aliases: list[str]) -> SeenVersion:
    # Never seen: `first_seen_unix_nano` 0.
    return SeenVersion(
        name=name, version=version, role=role, status=REGISTERED, aliases=aliases,
        lineage={}, first_seen_unix_nano=0, last_seen_unix_nano=0,
    )  # fmt: skip


def models_page(
    engine: Engine,
    project_id: int,
    result: AliasMove | None = None,
    error: str | None = None,
    tracking_uri: str | None = None,
) -> ModelsPage:
    """The page, with the outcome of a move just asked for (`result`), or why it could not be
    asked (`error`); MLflow's registry is read at `tracking_uri` (without: the model index
    alone, as when MLflow cannot be read)."""
    traffic = model_versions.traffic_per_version(engine, project_id)
    seen = model_versions.seen_versions(engine, project_id)
    names = sorted({v.name for v in seen})
    registry = registered_models(tracking_uri, names) if tracking_uri else None
    versions = seen if registry is None else with_registered(seen, registry, _unseen)
    served = {v.name for v in versions if v.role == "world_model"}
    drift = {
        (v.name, v.version): reports.list_reports(
            engine, project_id, v.name, v.version, limit=DRIFT_HISTORY
        ).items
        for v in versions
    }
    return ModelsPage(
        versions=versions,
        traffic=traffic,
        drift=drift,
        graph=build(seen, traffic),  # the lineage of what served traffic
        # The world model's name first: the one whose aliases the deploy gates usually move.
        names=sorted({v.name for v in versions}, key=lambda n: (n not in served, n)),
        moves=deployments.list_moves(engine, project_id),
        kpis=version_kpis(engine, project_id, {(v.name, v.role) for v in versions}),
        registry=registry,
        promotable=frozenset(
            (name, version)
            for name, model in (registry or {}).items()
            for version in model.versions
        ),
        result=result,
        usage=_usage(engine, project_id),
        error=error,
    )


def _usage(engine: Engine, project_id: int) -> dict[tuple[str, str], dict[str, Any]]:
    with read_connection(engine) as conn:
        return usage_per_version(conn, project_id)
