"""Experiment configurations: created (validated), listed, read with their assignment counts,
stopped; and the running ones as the policy bundle carries them to the SDKs and the gateway.

A project runs at most one experiment per stage at a time, so a request's stage is served by
one arm of one experiment. Creating and stopping are ledger events (`experiment.created`,
`experiment.stopped`) appended in the same transaction as the change.

    with write_transaction(engine) as conn: ...
    created = configs.create(engine, project_id, ExperimentSpec(...), actor="key:wdn_3fKq")
    entries, digest = configs.bundle(engine, project_id)   # what GET /v1/policies/bundle adds
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, func, insert, select, update

from app.audit import ledger
from app.errors import BadRequest, Conflict, NotFound, Unprocessable
from app.experiments import results as experiment_results
from app.experiments.read_models import (
    ArmSpec,
    BundledExperiment,
    ExperimentDetail,
    ExperimentOut,
    ExperimentSpec,
    ShadowSpec,
)
from app.store.dialect import is_postgresql
from app.store.engine import read_connection, write_transaction
from app.store.tables import Experiment, Project, RequestExperiment

STAGES = ("world_model", "planner")
UNITS = ("subject", "request")
STATUSES = ("running", "stopped")
# The decision KPIs an experiment can be judged on (docs/experiments.md).
KPIS = (
    "plan_success_rate", "deny_rate", "review_rate", "correction_rate", "escalation_rate",
    "latency_p50_ms", "latency_p95_ms", "cost_per_inference", "ood_rate", "shadow_agreement",
)  # fmt: skip
# Results younger than this are shown as stored: a page reloaded, or a CLI run in a loop,
# does not recompute the KPIs each time; the results worker refreshes them every few
# minutes anyway, and `refresh=True` forces it.
RESULTS_MAX_AGE_SECONDS = 30.0
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?")
# MLflow: a registered model name (no '/' nor '@'), then a version number or an alias.
_MODEL = re.compile(r"models:/[^/@\s]+(?:/[0-9]+|@[A-Za-z0-9_-]+)")


def validate(spec: ExperimentSpec) -> None:
    """Raise `Unprocessable` naming the first field whose value is not allowed.

    >>> validate(ExperimentSpec(name="wm-v2", stage="world_model", arms=[
    ...     ArmSpec(name="control", model="models:/wm/1"),
    ...     ArmSpec(name="v2", model="models:/wm/2")]))
    """
    _slug("name", spec.name)
    if spec.stage not in STAGES:
        raise Unprocessable(f"stage: {spec.stage!r} is not one of {', '.join(STAGES)}")
    if spec.unit not in UNITS:
        raise Unprocessable(f"unit: {spec.unit!r} is not one of {', '.join(UNITS)}")
    # One arm is enough when shadows run beside it: the champion answers, candidates shadow it.
    if not spec.arms or (len(spec.arms) < 2 and not spec.shadows):
        raise Unprocessable(
            "arms: an experiment needs at least two arms (the first: control), "
            "or one arm with shadow arms"
        )
    seen: set[str] = set()
    for i, arm in enumerate(spec.arms):
        _slug(f"arms[{i}].name", arm.name)
        _model(f"arms[{i}].model", arm.model)
        if not (math.isfinite(arm.weight) and arm.weight > 0):
            raise Unprocessable(f"arms[{i}].weight: must be a number above 0, not {arm.weight}")
        _unique(f"arms[{i}].name", arm.name, seen)
    for i, shadow in enumerate(spec.shadows):
        _slug(f"shadows[{i}].name", shadow.name)
        _model(f"shadows[{i}].model", shadow.model)
        if not (0 < shadow.sample_rate <= 1):
            raise Unprocessable(
                f"shadows[{i}].sample_rate: must be in (0, 1], not {shadow.sample_rate}"
            )
        _unique(f"shadows[{i}].name", shadow.name, seen)
    _kpi("primary_kpi", spec.primary_kpi)
    for i, kpi in enumerate(spec.guardrails):
        _kpi(f"guardrails[{i}]", kpi)
    if len(set(spec.guardrails)) != len(spec.guardrails):
        raise Unprocessable("guardrails: a KPI is named twice")
    if spec.salt is not None and not 1 <= len(spec.salt) <= 64:
        raise Unprocessable("salt: 1 to 64 characters (or leave it out for a random one)")


def _slug(field: str, value: str) -> None:
    if not _SLUG.fullmatch(value):
        raise Unprocessable(
            f"{field}: {value!r} is not a slug (lowercase letters, digits, '-' and '_', "
            "at most 64, starting and ending with a letter or digit)"
        )


def _model(field: str, value: str) -> None:
    if not _MODEL.fullmatch(value):
        raise Unprocessable(
            f"{field}: {value!r} is not a model reference: write models:/name/version or "
            "models:/name@alias"
        )


def _unique(field: str, name: str, seen: set[str]) -> None:
    if name in seen:
        raise Unprocessable(f"{field}: {name!r} names another arm or shadow already")
    seen.add(name)


def _kpi(field: str, value: str) -> None:
    if value not in KPIS:
        raise Unprocessable(f"{field}: {value!r} is not a KPI; one of {', '.join(KPIS)}")


def create(engine: Engine, project_id: int, spec: ExperimentSpec, actor: str) -> ExperimentOut:
    """Store a validated experiment, running from now; 409 when its name is taken or its
    stage already has a running experiment in the project."""
    validate(spec)
    arms = [arm.model_dump() for arm in spec.arms]
    shadows = [shadow.model_dump() for shadow in spec.shadows]
    with write_transaction(engine) as conn:
        _lock_project(conn, project_id)
        rows = conn.execute(
            select(Experiment.name, Experiment.stage, Experiment.status).where(
                Experiment.project_id == project_id,
                (Experiment.name == spec.name) | (Experiment.status == "running"),
            )
        ).all()
        for name, stage, status in rows:
            if name == spec.name:
                raise Conflict(f"experiment {spec.name!r} exists already ({status})")
            if stage == spec.stage:
                raise Conflict(
                    f"experiment {name!r} is running on stage {stage} already: stop it first "
                    f"(warden experiment stop {name})"
                )
        now = datetime.now(UTC)
        conn.execute(
            insert(Experiment).values(
                project_id=project_id, name=spec.name, description=spec.description,
                stage=spec.stage, unit=spec.unit, salt=spec.salt or secrets.token_hex(16),
                arms=arms, shadows=shadows, primary_kpi=spec.primary_kpi,
                guardrails=list(spec.guardrails), status="running", created_by=actor,
                created_at=now, starts_at=now, ends_at=spec.ends_at, results={},
            )
        )  # fmt: skip
        ledger.append(
            conn, project_id, None, ledger.EXPERIMENT_CREATED,
            {"name": spec.name, "stage": spec.stage, "unit": spec.unit, "arms": arms,
             "shadows": shadows, "primary_kpi": spec.primary_kpi,
             "guardrails": list(spec.guardrails), "actor": actor},
        )  # fmt: skip
        return _out(_row(conn, project_id, spec.name))


def _lock_project(conn: Connection, project_id: int) -> None:
    # Two creations racing for one stage: on PostgreSQL the project's row serialises them
    # (SQLite's write transaction is exclusive already).
    if is_postgresql(conn):
        conn.execute(select(Project.id).where(Project.id == project_id).with_for_update())


def stop(engine: Engine, project_id: int, name: str, actor: str) -> ExperimentOut:
    """Stop a running experiment: from the SDKs' next bundle refresh, it assigns nothing.
    404 for an unknown name, 409 when it is stopped already."""
    with write_transaction(engine) as conn:
        row = _row(conn, project_id, name)
        if row.status != "running":
            raise Conflict(f"experiment {name!r} was stopped already, at {row.stopped_at}")
        now = datetime.now(UTC)
        conn.execute(
            update(Experiment)
            .where(Experiment.id == row.id)
            .values(status="stopped", stopped_at=now)
        )
        ledger.append(
            conn, project_id, None, ledger.EXPERIMENT_STOPPED,
            {"name": name, "stage": row.stage, "actor": actor, "stopped_at": now.isoformat()},
        )  # fmt: skip
        return _out(_row(conn, project_id, name))


def list_experiments(
    engine: Engine, project_id: int, status: str | None = None
) -> list[ExperimentOut]:
    """The project's experiments, newest first; `status` keeps `running` or `stopped` ones."""
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    query = select(Experiment).where(Experiment.project_id == project_id)
    if status is not None:
        query = query.where(Experiment.status == status)
    with read_connection(engine) as conn:
        rows = conn.execute(query.order_by(Experiment.created_at.desc(), Experiment.id.desc()))
        return [_out(row) for row in rows]


def get(
    engine: Engine,
    project_id: int,
    name: str,
    *,
    refresh: bool = False,
    max_age: float = RESULTS_MAX_AGE_SECONDS,
) -> ExperimentDetail:
    """One experiment with the requests each of its arms served and its results: as stored
    when fresh enough, computed again when stale or when `refresh` asks for it (see the
    module's docstring)."""
    with read_connection(engine) as conn:
        row = _row(conn, project_id, name)
        counts = {arm["name"]: 0 for arm in row.arms}
        counted = conn.execute(
            select(RequestExperiment.arm, func.count())
            .where(
                RequestExperiment.project_id == project_id,
                RequestExperiment.experiment == name,
            )
            .group_by(RequestExperiment.arm)
        )
        for arm, n in counted:
            counts[arm] = int(n)
    results: dict[str, Any] | None = row.results or None
    if refresh or (sum(counts.values()) > 0 and _stale(row, max_age)):
        results = experiment_results.refresh(engine, project_id, name)
    return ExperimentDetail(**_out(row).model_dump(), counts=counts, results=results)


def _stale(row: Any, max_age: float) -> bool:
    """Whether the stored results of `row` are to be computed again before they are shown."""
    at: datetime | None = row.results_at
    if at is None or not row.results:
        return True
    if row.stopped_at is not None:
        return bool(at <= row.stopped_at)  # a stopped experiment's results change no more
    return (datetime.now(UTC) - at).total_seconds() > max_age


def running(engine: Engine, project_id: int) -> list[BundledExperiment]:
    """The project's running experiments, as the bundle carries them (oldest first)."""
    query = (
        select(Experiment)
        .where(Experiment.project_id == project_id, Experiment.status == "running")
        .order_by(Experiment.id)
    )
    with read_connection(engine) as conn:
        rows = conn.execute(query).all()
    return [
        BundledExperiment(
            name=row.name,
            stage=row.stage,
            unit=row.unit,
            salt=row.salt,
            arms=[ArmSpec(**a) for a in row.arms],
            shadows=[ShadowSpec(**s) for s in row.shadows or ()],
        )
        for row in rows
    ]


def bundle(engine: Engine, project_id: int) -> tuple[list[dict[str, Any]], str]:
    """The running experiments as bundle entries, and a digest of them that changes exactly
    when an experiment starts or stops (the bundle's ETag covers it)."""
    entries = [e.model_dump() for e in running(engine, project_id)]
    digest = hashlib.sha256(orjson.dumps(entries, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return entries, digest


def _row(conn: Connection, project_id: int, name: str) -> Any:
    row = conn.execute(
        select(Experiment).where(Experiment.project_id == project_id, Experiment.name == name)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no experiment {name!r} in this project")
    return row


def _out(row: Any) -> ExperimentOut:
    return ExperimentOut(
        name=row.name, description=row.description, stage=row.stage, unit=row.unit,
        salt=row.salt, arms=[ArmSpec(**a) for a in row.arms],
        shadows=[ShadowSpec(**s) for s in row.shadows or ()], primary_kpi=row.primary_kpi,
        guardrails=list(row.guardrails or ()), status=row.status, created_by=row.created_by,
        created_at=row.created_at, starts_at=row.starts_at, ends_at=row.ends_at,
        stopped_at=row.stopped_at,
    )  # fmt: skip
