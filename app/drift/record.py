"""What becomes of a judged version: its reports stored, the job logged to MLflow, the drift
policies run on each report (rollbacks included), the project's webhook alerted.

MLflow or the webhook being away does not fail the job: the reports are stored and judged
all the same, and the result says what did not happen.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert

from app.drift.alerts import post_alert
from app.drift.detectors.protocol import SEVERITY
from app.drift.results import VersionResult
from app.drift.settings import DriftSettings
from app.errors import NotFound
from app.registry import mlflow_results
from app.store.engine import write_transaction
from app.store.tables import DriftReport
from policies import Effect, PolicySet, Verdict

log = logging.getLogger("warden.drift")


def log_to_mlflow(tracking_uri: str, project: str, result: VersionResult) -> str | None:
    """One MLflow run for the version's job: a metric per kind, the verdicts as tags, the
    report and the detectors' reports for people as artifacts. Returns the run id."""
    metrics: dict[str, float] = {}
    for report in result.reports:
        metrics[f"{report.kind}.share_drifted"] = report.share_drifted
        metrics[f"{report.kind}.severity"] = float(SEVERITY[report.verdict])
    tags = {"warden.verdict": result.verdict, "warden.drift.job_id": result.job_id}
    tags.update({f"warden.verdict.{r.kind}": r.verdict for r in result.reports})
    artifacts: dict[str, bytes | str] = {
        "drift/report.json": json.dumps(result.to_json(), indent=2, sort_keys=True, default=str),
        **result.artifacts,
    }
    try:
        return mlflow_results.log_result(
            tracking_uri,
            mlflow_results.Result(
                kind="drift",
                project=project,
                model_name=result.model_name,
                model_version=result.model_version,
                name=f"drift-{result.model_name}-v{result.model_version}",
                metrics=metrics,
                tags=tags,
                artifacts=artifacts,
            ),
        )
    except Exception:  # MLflow away: the report is still stored and judged
        log.exception("could not log drift job %s to MLflow", result.job_id)
        return None


def store(engine: Engine, project_id: int, result: VersionResult) -> None:
    """A `drift_reports` row per kind judged, sharing the job's id."""
    rows = [
        {
            "project_id": project_id,
            "model_name": result.model_name,
            "model_version": result.model_version,
            "kind": r.kind,
            "window_start_unix_nano": r.current.start,
            "window_end_unix_nano": r.current.end,
            "reference": r.reference,
            "scores": {**r.scores, "requests": r.current_requests},
            "verdict": r.verdict,
            "mlflow_run_id": result.mlflow_run_id,
            "job_id": result.job_id,
            "created_at": datetime.now(UTC),
        }
        for r in result.reports
    ]
    with write_transaction(engine) as conn:
        conn.execute(insert(DriftReport), rows)


def apply_policies(
    engine: Engine,
    tracking_uri: str,
    policies: PolicySet,
    project: str,
    project_id: int,
    result: VersionResult,
) -> None:
    """The `drift` policies on each report, their verdicts and rollbacks added to `result`."""
    from app.governance import deploy
    from app.registry.lineage import mlflow_client

    client = mlflow_client(tracking_uri)
    for report in result.reports:
        try:
            verdicts, moves = deploy.judge_drift(
                engine, client, policies, project_id, project, report.policy_context(),
                result.model_name, result.model_version,
            )  # fmt: skip
        except NotFound as exc:
            result.skipped[f"policies.{report.kind}"] = exc.message
            continue
        result.policy_verdicts[report.kind] = [_verdict_json(v) for v in verdicts]
        result.rollbacks += [
            {"alias": m.alias, "from": m.from_version, "to": m.to_version, "kind": report.kind}
            for m in moves
        ]


def alert(project: str, config: DriftSettings, result: VersionResult) -> None:
    """POST the result to the project's webhook when a policy warned or rolled back, or
    anything drifted; whether it was delivered goes into `result.alerted`."""
    acting = {
        kind: [v for v in verdicts if v["fired"] and v["effect"] in {Effect.WARN, Effect.ROLLBACK}]
        for kind, verdicts in result.policy_verdicts.items()
    }
    if not any(acting.values()) and result.verdict == "none":
        return
    payload = {
        "event": "warden.drift",
        "project": project,
        **result.to_json(),
        "acting_policies": {k: v for k, v in acting.items() if v},
    }
    result.alerted = post_alert(str(config.webhook_url), payload, attempts=config.webhook_attempts)


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "policy_id": verdict.policy_id,
        "version": verdict.version,
        "effect": verdict.effect.value,
        "fired": verdict.fired,
        "message": verdict.message,
    }
