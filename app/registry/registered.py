"""What MLflow's registry holds now of the models seen in traffic: their registered versions and
which version each alias points at (`registered_models`), read fresh for the Models page and
`GET /v1/models`, which list the registered versions without traffic too (`with_registered`);
and the model index's copy of the aliases, moved in the transaction that records an alias move
(`move_alias`), so every process reads a move made through Warden (API, dashboard, CLI, the
drift job's rollback) at once. Otherwise the lineage resolver refreshes that copy every few
minutes (app/registry/lineage.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypeVar

import httpx
from sqlalchemy import Connection, select, update

from app.registry.lineage import RESOLVED, mlflow_client
from app.registry.read_models import ModelVersionSummary
from app.store.tables import ModelVersion

log = logging.getLogger("warden.registry")
L = TypeVar("L", bound="_Listed")
REGISTERED = "registered"  # the status of a registered version never seen in traffic
HEALTH_TIMEOUT = 2.0  # seconds: a page must not wait on MLflow's client retries


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model as MLflow holds it now."""

    name: str
    versions: list[str] = field(default_factory=list)  # oldest first
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version

    def aliases_of(self, version: str) -> list[str]:
        return sorted(a for a, v in self.aliases.items() if v == version)


def _reachable(tracking_uri: str) -> bool:
    if not tracking_uri.startswith(("http://", "https://")):
        return True
    try:
        url = f"{tracking_uri.rstrip('/')}/health"
        return httpx.get(url, timeout=HEALTH_TIMEOUT).status_code == 200
    except httpx.HTTPError:
        return False


def registered_models(tracking_uri: str, names: list[str]) -> dict[str, RegisteredModel] | None:
    """The registered models among `names` (names MLflow does not know are left out), or
    None when MLflow cannot be read now."""
    if not names:
        return {}
    if not _reachable(tracking_uri):
        return None
    try:
        client = mlflow_client(tracking_uri)
        from mlflow.exceptions import MlflowException

        out: dict[str, RegisteredModel] = {}
        for name in names:
            if "'" in name:
                continue  # not a name the registry's filter syntax can ask for
            try:
                model = client.get_registered_model(name)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    continue
                raise
            found = client.search_model_versions(f"name='{name}'")
            out[name] = RegisteredModel(
                name=name,
                versions=sorted((str(v.version) for v in found), key=_version_order),
                aliases={str(a): str(v) for a, v in (model.aliases or {}).items()},
            )
        return out
    except Exception as exc:  # MLflow away or failing: the caller shows the model index alone
        log.warning("MLflow's registry could not be read at %s: %s", tracking_uri, exc)
        return None


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


class _Listed(Protocol):
    name: str
    version: str
    role: str | None

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Self: ...


def with_registered(
    items: list[L],
    registry: dict[str, RegisteredModel],
    unseen: Callable[[str, str, str | None, list[str]], L],
) -> list[L]:
    """`items` (versions seen in traffic) with MLflow's aliases of now, then each registered
    version of their models that served nothing yet, as `unseen(name, version, role,
    aliases)` makes it (its role taken from its model's served versions)."""
    out = [
        i.model_copy(update={"aliases": registry[i.name].aliases_of(i.version)})
        if i.name in registry else i
        for i in items
    ]  # fmt: skip
    known = {(i.name, i.version) for i in items}
    roles = {i.name: i.role for i in items}
    for name, model in sorted(registry.items()):
        for version in model.versions:
            if (name, version) not in known:
                out.append(unseen(name, version, roles.get(name), model.aliases_of(version)))
    return out


def unseen_summary(
    name: str, version: str, role: str | None, aliases: list[str]
) -> ModelVersionSummary:
    """A registered version without traffic, as `GET /v1/models` lists it."""
    return ModelVersionSummary(
        name=name, version=version, role=role, status=REGISTERED, aliases=aliases,
        first_seen=None, last_seen=None, run_id=None, requests=0, outcomes={}, policies={},
        deny_rate=0.0,
    )  # fmt: skip


def move_alias(conn: Connection, name: str, alias: str, version: str, at: str) -> None:
    """Record in the model index that `alias` of model `name` now points at `version`, in
    every project that saw the model: MLflow's registry is the deployment's, not a project's.
    `at` is the move's time (ISO 8601), kept with the alias events of resolved versions."""
    rows = conn.execute(
        select(ModelVersion.id, ModelVersion.version, ModelVersion.status,
               ModelVersion.aliases, ModelVersion.lineage)
        .where(ModelVersion.name == name)
    ).all()  # fmt: skip
    for row in rows:
        before = list(row.aliases or [])
        after = [a for a in before if a != alias]
        if row.version == version:
            after = sorted([*after, alias])
        if after == before:
            continue
        values: dict[str, Any] = {"aliases": after}
        if row.status == RESOLVED and row.lineage:
            change = "added" if alias in after else "removed"
            values["lineage"] = {
                **row.lineage,
                "aliases": after,
                "alias_events": [
                    *row.lineage.get("alias_events", []),
                    {"alias": alias, "change": change, "at": at},
                ],
            }
        conn.execute(update(ModelVersion).where(ModelVersion.id == row.id).values(**values))
