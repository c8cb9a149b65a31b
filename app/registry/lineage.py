"""MLflow lineage: what MLflow holds of a model version, and the snapshot Warden keeps of it.

Every (name, version) seen in traffic is resolved off the ingest path, by a resolver thread of
the service: its registry entry (aliases and tags), its source run (params and metrics) and
the datasets the run logged. The snapshot is stored in `model_versions.lineage`, so a request
can be traced to the exact data snapshot even after the registry or the run is cleaned up.
A version MLflow does not know yet stays `unresolved` and is tried again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, or_, select, update

from app.daemons import PeriodicWorker
from app.errors import NotFound
from app.metrics import Metrics
from app.registry.read_models import LineageLinks, LineageStage, RequestLineage
from app.store import leadership
from app.store.engine import read_connection, write_transaction
from app.store.tables import ModelVersion, Project, Request, RequestModel

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# MLflow is imported when it is used, not when the service starts: it weighs some hundred
# megabytes per worker process.

log = logging.getLogger("warden.lineage")
UNRESOLVED = "unresolved"
RESOLVED = "resolved"
TAG_INTERVAL = 60.0  # seconds between traffic-summary tag rounds
_MLFLOW_IMPORT = threading.Lock()


def ensure_mlflow() -> None:
    """Import MLflow, one thread at a time; call it before any other import of `mlflow`.

    Its package imports itself circularly, so two threads importing it first at once (a
    request and a background job) can each see it half initialised and fail."""
    with _MLFLOW_IMPORT:
        import mlflow.exceptions
        import mlflow.tracking  # noqa: F401


def mlflow_client(tracking_uri: str) -> MlflowClient:
    ensure_mlflow()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def version_context(client: MlflowClient, name: str, version: str) -> dict[str, Any]:
    """A registry version as the `deploy` policies see it (docs/policies.md)."""
    from mlflow.exceptions import MlflowException

    try:
        entry = client.get_model_version(name, version)
    except MlflowException as exc:
        raise NotFound(f"MLflow has no version {version} of model {name!r}") from exc
    run: dict[str, Any] = {}
    datasets: list[dict[str, Any]] = []
    if entry.run_id:
        try:
            found = client.get_run(entry.run_id)
        except MlflowException:
            found = None
        # A deleted run (gone, or soft-deleted awaiting garbage collection) cannot vouch for
        # a version: the gates see no metrics and no data.
        if found is not None and found.info.lifecycle_stage != "deleted":
            run = {
                "id": found.info.run_id,
                "experiment_id": found.info.experiment_id,
                "metrics": dict(found.data.metrics),
                "params": dict(found.data.params),
            }
            for item in found.inputs.dataset_inputs if found.inputs else []:
                tags = {t.key: t.value for t in item.tags}
                datasets.append(
                    {
                        "name": item.dataset.name,
                        "digest": item.dataset.digest,
                        "source": item.dataset.source,
                        "source_type": item.dataset.source_type,
                        "schema": item.dataset.schema,
                        "profile": item.dataset.profile,
                        "context": tags.get("mlflow.data.context", ""),
                    }
                )
    tags = dict(entry.tags or {})
    return {
        "name": name,
        "version": str(entry.version),
        "run_id": entry.run_id,
        "source": entry.source,
        "role": tags.get("warden.role", ""),
        "aliases": list(entry.aliases or []),
        "tags": tags,
        "run": run,
        "datasets": datasets,
    }


def resolve_pending(
    engine: Engine,
    client: MlflowClient,
    refresh_after: float = 300.0,
    misses: dict[tuple[str, str], tuple[float, float]] | None = None,
) -> int:
    """Resolve the versions seen in traffic that MLflow knows by now, and refresh the aliases
    and tags of resolved ones last looked at more than `refresh_after` seconds ago.
    Returns how many rows changed. Runs off the ingest path (the resolver thread).

    `misses` remembers the versions MLflow did not know, so each is asked again only after a
    growing pause (1 s, doubling to 5 min) rather than every round.
    """
    stale = datetime.now(UTC) - timedelta(seconds=refresh_after)
    query = select(
        ModelVersion.id, ModelVersion.name, ModelVersion.version, ModelVersion.status,
        ModelVersion.aliases, ModelVersion.lineage,
    ).where(
        or_(ModelVersion.status == UNRESOLVED, ModelVersion.resolved_at < stale)
    )  # fmt: skip
    with read_connection(engine) as conn:
        rows = conn.execute(query).all()
    changed = 0
    seen: dict[tuple[str, str], dict[str, Any] | None] = {}
    for row in rows:
        key = (row.name, row.version)
        now_s = time.monotonic()
        if misses is not None and key in misses and misses[key][0] > now_s:
            continue
        if key not in seen:
            try:
                seen[key] = version_context(client, row.name, row.version)
            except NotFound:
                seen[key] = None  # not registered (yet): stays unresolved, tried again
                if misses is not None:
                    pause = min(misses.get(key, (0.0, 0.5))[1] * 2, 300.0)
                    misses[key] = (now_s + pause, pause)
        found = seen[key]
        if found is None:
            continue
        now = datetime.now(UTC)
        if row.status == UNRESOLVED:
            snapshot = {**found, "alias_events": []}
        else:
            # The run and its data were captured when first seen: a later clean-up in MLflow
            # must not erase them. Only the registry's aliases and tags are refreshed.
            snapshot = {**row.lineage, "aliases": found["aliases"], "tags": found["tags"]}
            snapshot["alias_events"] = list(row.lineage.get("alias_events", [])) + [
                {"alias": a, "change": change, "at": now.isoformat()}
                for change, names in (
                    ("added", set(found["aliases"]) - set(row.aliases)),
                    ("removed", set(row.aliases) - set(found["aliases"])),
                )
                for a in sorted(names)
            ]
        with write_transaction(engine) as conn:
            conn.execute(
                update(ModelVersion)
                .where(ModelVersion.id == row.id)
                .values(
                    status=RESOLVED, run_id=snapshot.get("run_id"), aliases=snapshot["aliases"],
                    tags=snapshot["tags"], lineage=snapshot, resolved_at=now,
                )
            )  # fmt: skip
        changed += 1
    return changed


def tag_traffic(engine: Engine, client: MlflowClient) -> int:
    """Write each resolved version's production traffic back to MLflow as version tags
    (`warden.<project>.requests`, `.deny_rate`, `.last_drift_verdict`), where a data
    scientist already looks. Through the MLflow client only; returns the tags written."""
    from app.registry.model_versions import latest_drift, list_versions

    with read_connection(engine) as conn:
        projects = conn.execute(select(Project.id, Project.name)).all()
    written = 0
    for project_id, project in projects:
        for version in list_versions(engine, project_id):
            if version.status != RESOLVED:
                continue
            drift = latest_drift(engine, project_id, version.name, version.version)["verdict"]
            wanted = {
                f"warden.{project}.requests": str(version.requests),
                f"warden.{project}.deny_rate": f"{version.deny_rate:.4f}",
                f"warden.{project}.last_drift_verdict": drift,
            }
            current = client.get_model_version(version.name, version.version).tags or {}
            for key, value in wanted.items():
                if current.get(key) != value:
                    client.set_model_version_tag(version.name, version.version, key, value)
                    written += 1
    return written


class Resolver(PeriodicWorker):
    """The service's resolver: `resolve_pending` every `interval`, `tag_traffic` at most once
    a minute.

    Of all the processes of a deployment only one resolves (the leader of the `lineage` job,
    app/daemons.py), so MLflow is read, and imported, once per deployment rather than once
    per process.
    """

    def __init__(
        self, engine: Engine, tracking_uri: str, interval: float, metrics: Metrics | None = None
    ) -> None:
        name = "lineage"
        super().__init__(name, interval, leadership.for_engine(engine, name), metrics)
        self.engine = engine
        self.tracking_uri = tracking_uri
        self.client: MlflowClient | None = None
        self.misses: dict[tuple[str, str], tuple[float, float]] = {}
        self._tagged = 0.0

    def became_leader(self) -> None:
        if self.client is None:
            self.client = mlflow_client(self.tracking_uri)  # import MLflow now, not mid-round

    def tick(self) -> None:
        # MLflow away, a database blip: the round fails, logged, and the next tries again.
        self.client = self.client or mlflow_client(self.tracking_uri)
        resolve_pending(self.engine, self.client, misses=self.misses)
        # Traffic summaries count every request of every version: a query too heavy to
        # repeat every few seconds beside ingest, for tags nobody needs fresher than a minute.
        if time.monotonic() - self._tagged >= max(self.interval, TAG_INTERVAL):
            tag_traffic(self.engine, self.client)
            self._tagged = time.monotonic()


def mlflow_link(tracking_uri: str, fragment: str) -> str | None:
    """A link into the MLflow UI, when the tracking URI is a server's."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/{fragment}"
    return None


def request_lineage(
    engine: Engine, project_id: int, request_id: str, tracking_uri: str
) -> RequestLineage:
    """A request -> each stage's model version -> its run -> its datasets."""
    trace_id = request_id.lower()
    with read_connection(engine) as conn:
        found = conn.execute(
            select(Request.trace_id).where(
                Request.project_id == project_id, Request.trace_id == trace_id
            )
        ).one_or_none()
        if found is None:
            raise NotFound(f"no request {request_id!r} in this project")
        stages = conn.execute(
            select(
                RequestModel.role,
                ModelVersion.name,
                ModelVersion.version,
                ModelVersion.status,
                ModelVersion.aliases,
                ModelVersion.tags,
                ModelVersion.lineage,
            )
            .join(
                ModelVersion,
                (ModelVersion.project_id == RequestModel.project_id)
                & (ModelVersion.name == RequestModel.model_name)
                & (ModelVersion.version == RequestModel.model_version),
            )
            .where(RequestModel.project_id == project_id, RequestModel.trace_id == trace_id)
            .order_by(RequestModel.role)
        ).all()
    out = []
    for version in stages:
        snapshot = version.lineage or {}
        run = snapshot.get("run") or {}
        run_path = f"experiments/{run.get('experiment_id')}/runs/{run.get('id')}"
        run_link = mlflow_link(tracking_uri, run_path) if run else None
        out.append(
            LineageStage(
                role=version.role,
                name=version.name,
                version=version.version,
                status=version.status,
                aliases=version.aliases,
                tags=version.tags,
                run=run,
                datasets=snapshot.get("datasets", []),
                alias_events=snapshot.get("alias_events", []),
                links=LineageLinks(
                    version=mlflow_link(
                        tracking_uri, f"models/{version.name}/versions/{version.version}"
                    ),
                    run=run_link,
                ),
            )
        )
    return RequestLineage(request_id=trace_id, stages=out)
