"""Model versions seen in traffic: how much they served, how it went, what MLflow says."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from app.errors import NotFound
from app.registry.read_models import (
    ModelVersionDetail,
    ModelVersionSummary,
    SeenVersion,
    VersionTraffic,
)
from app.store.engine import read_connection
from app.store.genai import usage_per_version
from app.store.queries import iso
from app.store.tables import DriftReport, ModelVersion, PolicyEvaluation, Request, RequestModel

DENIED = "denied"  # the outcome counted as a denial


def _traffic(
    conn: Any, project_id: int, name: str | None = None, version: str | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Requests per outcome, and policy evaluations per (policy, outcome), per version."""
    joined = (RequestModel.project_id == Request.project_id) & (
        RequestModel.trace_id == Request.trace_id
    )
    query = (
        select(RequestModel.model_name, RequestModel.model_version, Request.outcome, func.count())
        .join(Request, joined)
        .where(RequestModel.project_id == project_id)
        .group_by(RequestModel.model_name, RequestModel.model_version, Request.outcome)
    )
    policy = (
        select(RequestModel.model_name, RequestModel.model_version, PolicyEvaluation.policy_id,
               PolicyEvaluation.outcome, func.count())
        .join(PolicyEvaluation, (PolicyEvaluation.project_id == RequestModel.project_id)
              & (PolicyEvaluation.trace_id == RequestModel.trace_id))
        .where(RequestModel.project_id == project_id)
        .group_by(RequestModel.model_name, RequestModel.model_version, PolicyEvaluation.policy_id,
                  PolicyEvaluation.outcome)
    )  # fmt: skip
    if name is not None:
        query = query.where(RequestModel.model_name == name, RequestModel.model_version == version)
        policy = policy.where(
            RequestModel.model_name == name, RequestModel.model_version == version
        )
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for n, v, outcome, count in conn.execute(query):
        entry = out.setdefault((n, v), {"requests": 0, "outcomes": {}, "policies": {}})
        entry["requests"] += count
        entry["outcomes"][outcome or "unknown"] = count
    for n, v, policy_id, outcome, count in conn.execute(policy):
        entry = out.setdefault((n, v), {"requests": 0, "outcomes": {}, "policies": {}})
        entry["policies"].setdefault(policy_id, {})[outcome] = count
    for entry in out.values():
        total = entry["requests"]
        entry["deny_rate"] = entry["outcomes"].get(DENIED, 0) / total if total else 0.0
    return out


def _version(
    row: Any, traffic: dict[str, Any] | None, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    traffic = traffic or {"requests": 0, "outcomes": {}, "policies": {}, "deny_rate": 0.0}
    return {
        "name": row.name,
        "version": row.version,
        "role": row.role,
        "status": row.status,
        "aliases": row.aliases,
        "first_seen": iso(row.first_seen_unix_nano),
        "last_seen": iso(row.last_seen_unix_nano),
        "run_id": row.run_id,
        **traffic,
        **({"usage": usage} if usage else {}),
    }


def list_versions(engine: Engine, project_id: int) -> list[ModelVersionSummary]:
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(ModelVersion).where(ModelVersion.project_id == project_id)
            .order_by(ModelVersion.name, ModelVersion.first_seen_unix_nano)
        ).all()  # fmt: skip
        traffic = _traffic(conn, project_id)
        usage = usage_per_version(conn, project_id)
    return [
        ModelVersionSummary.model_validate(
            _version(row, traffic.get((row.name, row.version)), usage.get((row.name, row.version)))
        )
        for row in rows
    ]


_SEEN = (
    ModelVersion.name, ModelVersion.version, ModelVersion.role, ModelVersion.status,
    ModelVersion.aliases, ModelVersion.lineage, ModelVersion.first_seen_unix_nano,
    ModelVersion.last_seen_unix_nano,
)  # fmt: skip


def _seen(row: Any) -> SeenVersion:
    return SeenVersion(
        name=row.name, version=row.version, role=row.role, status=row.status,
        aliases=row.aliases or [], lineage=row.lineage or {},
        first_seen_unix_nano=row.first_seen_unix_nano, last_seen_unix_nano=row.last_seen_unix_nano,
    )  # fmt: skip


def seen_versions(engine: Engine, project_id: int) -> list[SeenVersion]:
    """Every model version seen in traffic, by role, name and first sighting; a read of the
    model index alone (`list_versions` also counts each version's traffic)."""
    query = (
        select(*_SEEN)
        .where(ModelVersion.project_id == project_id)
        .order_by(ModelVersion.role, ModelVersion.name, ModelVersion.first_seen_unix_nano)
    )
    with read_connection(engine) as conn:
        return [_seen(r) for r in conn.execute(query)]


def serving_since(engine: Engine, project_id: int, since_ns: int) -> list[SeenVersion]:
    """The model versions seen in traffic since `since_ns`, by role, name and version."""
    query = (
        select(*_SEEN)
        .where(ModelVersion.project_id == project_id, ModelVersion.last_seen_unix_nano >= since_ns)
        .order_by(ModelVersion.role, ModelVersion.name, ModelVersion.version)
    )
    with read_connection(engine) as conn:
        return [_seen(r) for r in conn.execute(query)]


def traffic_per_version(engine: Engine, project_id: int) -> dict[tuple[str, str], VersionTraffic]:
    """Requests and denials per model version, from the model index (a count per version)
    and the denied requests (looked up by trace id): it reads the denied requests, not every
    request, unlike `list_versions`."""
    out: dict[tuple[str, str], VersionTraffic] = {}
    with read_connection(engine) as conn:
        seen = conn.execute(
            select(ModelVersion.name, ModelVersion.version).where(
                ModelVersion.project_id == project_id
            )
        ).all()
        for name, version in seen:
            count = conn.execute(
                select(func.count())
                .select_from(RequestModel)
                .where(
                    RequestModel.project_id == project_id,
                    RequestModel.model_name == name,
                    RequestModel.model_version == version,
                )
            ).scalar_one()
            out[(name, version)] = VersionTraffic(requests=int(count))
        denied = list(
            conn.execute(
                select(Request.trace_id).where(
                    Request.project_id == project_id, Request.outcome == DENIED
                )
            ).scalars()
        )
        for start in range(0, len(denied), 500):
            stages = conn.execute(
                select(RequestModel.model_name, RequestModel.model_version).where(
                    RequestModel.project_id == project_id,
                    RequestModel.trace_id.in_(denied[start : start + 500]),
                )
            )
            for name, version in stages:
                out.setdefault((name, version), VersionTraffic()).denied += 1
    return out


def get_version(engine: Engine, project_id: int, name: str, version: str) -> ModelVersionDetail:
    with read_connection(engine) as conn:
        row = conn.execute(
            select(ModelVersion).where(
                ModelVersion.project_id == project_id,
                ModelVersion.name == name,
                ModelVersion.version == version,
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"no traffic seen for {name} v{version} in this project")
        traffic = _traffic(conn, project_id, name, version)
        usage = usage_per_version(conn, project_id, name, version).get((name, version))
    return ModelVersionDetail.model_validate(
        {**_version(row, traffic.get((name, version)), usage), "tags": row.tags,
         "lineage": row.lineage}
    )  # fmt: skip


def latest_drift(engine: Engine, project_id: int, name: str, version: str) -> dict[str, Any]:
    """The newest drift report of a version as the deploy gates see it (`verdict: none`
    when there is none yet)."""
    query = (
        select(DriftReport.kind, DriftReport.verdict, DriftReport.scores)
        .where(
            DriftReport.project_id == project_id,
            DriftReport.model_name == name,
            DriftReport.model_version == version,
        )
        .order_by(DriftReport.created_at.desc(), DriftReport.id.desc())
        .limit(1)
    )
    with read_connection(engine) as conn:
        row = conn.execute(query).one_or_none()
    if row is None:
        return {"verdict": "none", "kind": "", "scores": {}}
    return {"verdict": row.verdict, "kind": row.kind, "scores": row.scores}
