"""Deploy gates on MLflow aliases: promote, roll back, and the drift verdicts that roll back.

An alias (e.g. `champion`) moves to a version only when the `deploy` policies allow it,
judged on what MLflow holds of the version: its registry entry, its training run's metrics
and params, the datasets the run logged. Every request to move an alias, allowed or not, is
kept in `deployments` with its verdicts, and each verdict in `policy_evaluations`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, insert, select

from app.audit import ledger
from app.errors import BadRequest, Conflict
from app.experiments import results as experiment_results
from app.experiments import settings as experiment_settings
from app.registry.lineage import version_context
from app.registry.model_versions import latest_drift
from app.registry.registered import move_alias
from app.store.engine import read_connection, write_transaction
from app.store.tables import Deployment, PolicyEvaluation
from policies import Effect, PolicySet, Verdict, strongest

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


_PASSING = (Effect.ALLOW, Effect.WARN)


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    action: str
    from_version: str | None
    to_version: str | None
    allowed: bool
    verdicts: list[Verdict]
    reason: str

    def failing(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.fired and v.effect not in _PASSING]


def _holder(client: MlflowClient, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote(
    engine: Engine,
    client: MlflowClient,
    policies: PolicySet,
    project_id: int,
    project: str,
    name: str,
    version: str,
    alias: str,
    actor: str,
) -> AliasMove:
    """Move `alias` to `version` if the deploy gates allow it; record the attempt either way."""
    current = _holder(client, name, alias)
    if current == str(version):
        raise Conflict(f"{alias!r} already points at {name} v{version}")
    candidate = version_context(client, name, version)
    # What experiments found about the candidate, and whether the project asks for any.
    candidate["experiments"] = experiment_results.evidence(engine, project_id, name, str(version))
    candidate["require_experiment"] = experiment_settings.load(
        engine, project_id
    ).require_experiment
    incumbent: dict[str, Any] = {}
    if current:
        incumbent = version_context(client, name, current)
        incumbent["drift"] = latest_drift(engine, project_id, name, current)
    verdicts = policies.evaluate(
        "deploy", {"candidate": candidate, "incumbent": incumbent, "project": project}
    )
    decisive = strongest(verdicts)
    allowed = decisive is None or decisive.effect in _PASSING
    return _move(engine, client, project_id, name, alias, "promote", current, str(version),
                 verdicts, allowed, actor, "")  # fmt: skip


def rollback(
    engine: Engine,
    client: MlflowClient,
    project_id: int,
    name: str,
    alias: str,
    actor: str,
    reason: str = "",
    verdicts: list[Verdict] | None = None,
) -> AliasMove:
    """Move `alias` back to the version it held before, among those the gates let through.
    `verdicts` are the drift verdicts that asked for it, kept with the record."""
    current = _holder(client, name, alias)
    query = (
        select(Deployment.to_version)
        .where(
            Deployment.project_id == project_id,
            Deployment.model_name == name,
            Deployment.alias == alias,
            Deployment.allowed.is_(True),
        )
        .order_by(Deployment.created_at.desc(), Deployment.id.desc())
    )
    with read_connection(engine) as conn:
        history = [v for (v,) in conn.execute(query) if v is not None]
    previous = next((v for v in history if v != current), None)
    if previous is None:
        raise Conflict(
            f"no earlier version of {name} passed the gates for {alias!r}: nothing to roll back to"
        )
    return _move(engine, client, project_id, name, alias, "rollback", current, previous,
                 verdicts or [], True, actor, reason)  # fmt: skip


def _move(
    engine: Engine,
    client: MlflowClient,
    project_id: int,
    name: str,
    alias: str,
    action: str,
    current: str | None,
    target: str,
    verdicts: list[Verdict],
    allowed: bool,
    actor: str,
    reason: str,
) -> AliasMove:
    if allowed:
        client.set_registered_model_alias(name, alias, target)
    with write_transaction(engine) as conn:
        conn.execute(
            insert(Deployment).values(
                project_id=project_id, model_name=name, alias=alias, action=action,
                from_version=current, to_version=target, allowed=allowed,
                verdicts=[verdict_json(v) for v in verdicts], actor=actor, reason=reason or None,
            )
        )  # fmt: skip
        if allowed:
            # The model index's aliases move with the record of the move, so every process
            # (API, dashboard, a CLI's or the drift job's move) reads it at once.
            move_alias(conn, name, alias, target, datetime.now(UTC).isoformat())
        if action == "promote":
            # A rollback's verdicts are the drift policies', recorded when they were judged.
            record_verdicts(conn, project_id, verdicts)
        kind = (
            ledger.MODEL_ROLLED_BACK if action == "rollback"
            else ledger.MODEL_PROMOTED if allowed else ledger.MODEL_PROMOTION_REFUSED
        )  # fmt: skip
        ledger.append(conn, project_id, None, kind, {
            "model": name, "alias": alias, "from_version": current, "to_version": target,
            "actor": actor, "reason": reason or None,
            "verdicts": [{"policy_id": v.policy_id, "version": v.version, "hash": v.hash,
                          "effect": v.effect.value, "fired": v.fired} for v in verdicts],
        })  # fmt: skip
    return AliasMove(name, alias, action, current, target, allowed, verdicts, reason)


def record_verdicts(conn: Connection, project_id: int, verdicts: list[Verdict]) -> None:
    """Each verdict of a gate that judged no request (deploy, drift) in `policy_evaluations`,
    where the policies' hit counts are read."""
    if not verdicts:
        return
    now = time.time_ns()
    conn.execute(
        insert(PolicyEvaluation),
        [
            {
                "project_id": project_id, "trace_id": None, "span_id": None, "seq": i,
                "phase": v.phase, "policy_id": v.policy_id, "policy_version": v.version,
                "policy_hash": v.hash, "outcome": v.effect.value,
                "message": v.message or None, "time_unix_nano": now,
            }
            for i, v in enumerate(verdicts)
        ],
    )  # fmt: skip


def verdict_json(v: Verdict) -> dict[str, Any]:
    return {
        "policy_id": v.policy_id,
        "version": v.version,
        "hash": v.hash,
        "effect": v.effect.value,
        "fired": v.fired,
        "message": v.message,
    }


def judge_drift(
    engine: Engine,
    client: MlflowClient,
    policies: PolicySet,
    project_id: int,
    project: str,
    report: dict[str, Any],
    name: str,
    version: str,
    actor: str = "drift",
) -> tuple[list[Verdict], list[AliasMove]]:
    """Hand a drift report to the `drift` policies; a `rollback` moves each serving alias of
    the version back, through the same path as `warden rollback`."""
    if "verdict" not in report:
        raise BadRequest("a drift report needs a 'verdict'")
    model = version_context(client, name, version)
    verdicts = policies.evaluate("drift", {"report": report, "model": model, "project": project})
    with write_transaction(engine) as conn:
        record_verdicts(conn, project_id, verdicts)
    moves = []
    decisive = strongest(verdicts)
    if decisive is not None and decisive.effect == Effect.ROLLBACK:
        for alias in model["aliases"]:
            try:
                moves.append(
                    rollback(engine, client, project_id, name, alias, actor,
                             reason=decisive.message, verdicts=verdicts)
                )  # fmt: skip
            except Conflict:
                continue  # an alias with no earlier gated version stays where it is
    return verdicts, moves
