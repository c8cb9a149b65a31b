"""Small look-ups the dashboard's forms and pages need beside the service functions: the
versions a project has seen, recent drift windows, alias moves, known outcomes. Each reads
a handful of rows of a small table (or an index), never the requests themselves."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, func, select

from app.errors import NotFound
from app.store.engine import read_connection
from app.store.tables import (
    Deployment,
    DriftReport,
    ModelVersion,
    PolicyEvaluation,
    Request,
    RequestModel,
    RequestRollup,
)
from policies import Effect

_NS = 1_000_000_000
DENIED = "denied"  # the outcome `model_versions` counts as a denial


def versions(engine: Engine, project_id: int) -> list[dict[str, Any]]:
    """Every model version seen in traffic: name, version, role, aliases, lineage snapshot."""
    query = (
        select(ModelVersion.name, ModelVersion.version, ModelVersion.role, ModelVersion.status,
               ModelVersion.aliases, ModelVersion.lineage, ModelVersion.first_seen_unix_nano,
               ModelVersion.last_seen_unix_nano)
        .where(ModelVersion.project_id == project_id)
        .order_by(ModelVersion.role, ModelVersion.name, ModelVersion.first_seen_unix_nano)
    )  # fmt: skip
    with read_connection(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def drift_windows(engine: Engine, project_id: int, limit: int = 30) -> list[dict[str, Any]]:
    """The newest drift jobs' current windows, one per job (the input kind's, or another)."""
    query = (
        select(DriftReport.id, DriftReport.job_id, DriftReport.model_name,
               DriftReport.model_version, DriftReport.kind, DriftReport.verdict,
               DriftReport.window_start_unix_nano, DriftReport.window_end_unix_nano,
               DriftReport.created_at)
        .where(DriftReport.project_id == project_id)
        .order_by(DriftReport.id.desc())
        .limit(limit * 3)
    )  # fmt: skip
    with read_connection(engine) as conn:
        rows = conn.execute(query).all()
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row.job_id or str(row.id)
        entry = seen.setdefault(key, {**row._mapping, "verdicts": {}})
        entry["verdicts"][row.kind] = row.verdict
    return list(seen.values())[:limit]


def drift_window(engine: Engine, project_id: int, report_id: int) -> dict[str, Any]:
    with read_connection(engine) as conn:
        row = conn.execute(
            select(DriftReport.model_name, DriftReport.model_version,
                   DriftReport.window_start_unix_nano, DriftReport.window_end_unix_nano)
            .where(DriftReport.project_id == project_id, DriftReport.id == report_id)
        ).one_or_none()  # fmt: skip
    if row is None:
        raise NotFound(f"no drift report {report_id} in this project")
    return dict(row._mapping)


def drift_run_known(engine: Engine, project_id: int, run_id: str) -> bool:
    """Whether a drift report of this project names MLflow run `run_id`."""
    with read_connection(engine) as conn:
        return (
            conn.execute(
                select(DriftReport.id)
                .where(DriftReport.project_id == project_id, DriftReport.mlflow_run_id == run_id)
                .limit(1)
            ).first()
            is not None
        )


def deployments(engine: Engine, project_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The newest alias moves asked for (allowed or not), with their verdicts."""
    query = (
        select(Deployment.model_name, Deployment.alias, Deployment.action,
               Deployment.from_version, Deployment.to_version, Deployment.allowed,
               Deployment.verdicts, Deployment.actor, Deployment.reason, Deployment.created_at)
        .where(Deployment.project_id == project_id)
        .order_by(Deployment.id.desc())
        .limit(limit)
    )  # fmt: skip
    with read_connection(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def known_outcomes(engine: Engine, project_id: int, days: int = 30) -> list[str]:
    """Outcomes seen in the last `days` days, from the hourly rollups."""
    since = (time.time_ns() - days * 86_400 * _NS) // (3600 * _NS) * (3600 * _NS)
    query = select(RequestRollup.outcomes).where(
        RequestRollup.project_id == project_id,
        RequestRollup.width_seconds == 3600,
        RequestRollup.start_unix_nano >= since,
    )
    found: set[str] = set()
    with read_connection(engine) as conn:
        for (outcomes,) in conn.execute(query):
            found.update(outcomes or {})
    return sorted(found)


def policy_hits(
    engine: Engine, project_id: int, policy_ids: list[str], since_ns: int
) -> dict[str, dict[str, int]]:
    """Evaluations since `since_ns` per policy and outcome: one count over the (policy,
    outcome, time) index per pair, never a pass over the evaluations themselves."""
    out: dict[str, dict[str, int]] = {}
    with read_connection(engine) as conn:
        for policy_id in policy_ids:
            counts = out.setdefault(policy_id, {})
            for outcome in Effect:
                n = conn.execute(
                    select(func.count())
                    .select_from(PolicyEvaluation)
                    .where(
                        PolicyEvaluation.project_id == project_id,
                        PolicyEvaluation.policy_id == policy_id,
                        PolicyEvaluation.outcome == outcome.value,
                        PolicyEvaluation.time_unix_nano >= since_ns,
                    )
                ).scalar_one()
                if n:
                    counts[outcome.value] = int(n)
    return out


def version_traffic(engine: Engine, project_id: int) -> dict[tuple[str, str], dict[str, Any]]:
    """Requests and deny rate per model version seen in traffic, from the model index (a
    count per version) and the denied requests (looked up by trace id): it reads the denied
    requests, not every request, unlike `model_versions.list_versions`."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
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
            out[(name, version)] = {"requests": int(count), "denied": 0}
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
                entry = out.setdefault((name, version), {"requests": 0, "denied": 0})
                entry["denied"] += 1
    for entry in out.values():
        entry["deny_rate"] = entry["denied"] / entry["requests"] if entry["requests"] else 0.0
    return out
