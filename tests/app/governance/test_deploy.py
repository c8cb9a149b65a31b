"""Deploy gates against a real MLflow store: promote, refuse, roll back, drift rollback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine, select

from app.errors import Conflict
from app.governance import deploy
from app.store.tables import Deployment, PolicyEvaluation
from app.tenancy import projects
from policies import BUILTIN, PolicySet
from tests.conftest import LiveService

MODEL = "booking-world-model"
GOOD = {"val_conflict_auc": 0.96, "val_conflict_accuracy": 0.94}


class Registry:
    """A real MLflow store in a temporary folder, with versions made to order."""

    def __init__(self, tmp_path: Path, uri: str | None = None) -> None:
        """A local SQLite store in `tmp_path`, or the store of a server at `uri`."""
        self.uri = uri or f"sqlite:///{tmp_path / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        # Names of their own: a server's store is shared by the tests of a session.
        suffix = tmp_path.name if uri else ""
        self.experiment = self.client.create_experiment(
            f"training{suffix}", artifact_location=None if uri else str(tmp_path / "artifacts")
        )
        self.model = f"{MODEL}{'-' + suffix if suffix else ''}"
        self.client.create_registered_model(self.model)

    def version(self, metrics: dict[str, float], dataset: bool = True) -> str:
        run = self.client.create_run(self.experiment)
        for key, value in metrics.items():
            self.client.log_metric(run.info.run_id, key, value)
        if dataset:
            data = Dataset("booking-sim", "ebf00c0e", "local", "file:///data/sim.parquet")
            tag = InputTag("mlflow.data.context", "training")
            self.client.log_inputs(run.info.run_id, datasets=[DatasetInput(data, [tag])])
        self.client.set_terminated(run.info.run_id)
        source = f"{run.info.artifact_uri}/model"  # a server takes sources inside the run
        created = self.client.create_model_version(self.model, source, run_id=run.info.run_id)
        return str(created.version)

    def champion(self) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(self.model, "champion").version)
        except Exception:
            return None


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path)


def _project(engine: Engine) -> int:
    return projects.create_project(engine, "booking")


def test_promotion_gates_refuse_then_allow_then_roll_back(
    engine: Engine, registry: Registry
) -> None:
    pid = _project(engine)
    gates = PolicySet.load_dir(BUILTIN)
    first = registry.version(GOOD)
    lacking = registry.version({"val_loss": 0.2})
    second = registry.version({**GOOD, "val_conflict_auc": 0.97})

    move = deploy.promote(
        engine, registry.client, gates, pid, "booking", MODEL, first, "champion", "t"
    )
    assert move.allowed and registry.champion() == first

    refused = deploy.promote(
        engine, registry.client, gates, pid, "booking", MODEL, lacking, "champion", "t"
    )
    assert not refused.allowed
    assert registry.champion() == first  # the alias did not move
    (failing,) = refused.failing()
    assert failing.policy_id == "promotion-metrics"
    assert "val_conflict_accuracy" in failing.message and "val_conflict_auc" in failing.message

    assert deploy.promote(
        engine, registry.client, gates, pid, "booking", MODEL, second, "champion", "t"
    ).allowed
    assert registry.champion() == second

    back = deploy.rollback(engine, registry.client, pid, MODEL, "champion", "t", reason="test")
    assert (back.from_version, back.to_version) == (second, first)
    assert registry.champion() == first

    with engine.connect() as conn:
        history = conn.execute(
            select(Deployment.action, Deployment.from_version, Deployment.to_version,
                   Deployment.allowed).order_by(Deployment.id)
        ).all()  # fmt: skip
        denials = conn.execute(
            select(PolicyEvaluation.policy_id, PolicyEvaluation.policy_hash).where(
                PolicyEvaluation.outcome == "deny"
            )
        ).all()
    assert [tuple(row) for row in history] == [
        ("promote", None, first, True),
        ("promote", first, lacking, False),
        ("promote", first, second, True),
        ("rollback", second, first, True),
    ]
    assert denials == [("promotion-metrics", gates.get("promotion-metrics").hash)]


def test_a_run_without_its_training_data_is_refused(engine: Engine, registry: Registry) -> None:
    pid = _project(engine)
    bare = registry.version(GOOD, dataset=False)
    move = deploy.promote(engine, registry.client, PolicySet.load_dir(BUILTIN), pid, "booking",
                          MODEL, bare, "champion", "t")  # fmt: skip
    assert not move.allowed
    assert [v.policy_id for v in move.failing()] == ["promotion-training-data"]
    assert registry.champion() is None


def test_a_deleted_run_leaves_nothing_to_promote_on(engine: Engine, registry: Registry) -> None:
    pid = _project(engine)
    version = registry.version(GOOD)
    run_id = registry.client.get_model_version(MODEL, version).run_id
    registry.client.delete_run(run_id)
    move = deploy.promote(engine, registry.client, PolicySet.load_dir(BUILTIN), pid, "booking",
                          MODEL, version, "champion", "t")  # fmt: skip
    assert not move.allowed  # a soft-deleted run counts as gone
    assert registry.champion() is None


def test_a_drift_verdict_on_the_serving_version_rolls_it_back(
    engine: Engine, registry: Registry
) -> None:
    pid = _project(engine)
    gates = PolicySet.load_dir(BUILTIN)
    old, new = registry.version(GOOD), registry.version(GOOD)
    for version in (old, new):
        deploy.promote(
            engine, registry.client, gates, pid, "booking", MODEL, version, "champion", "t"
        )
    calm = {"kind": "latent", "verdict": "none", "share_drifted": 0.0}
    verdicts, moves = deploy.judge_drift(
        engine, registry.client, gates, pid, "booking", calm, MODEL, new
    )
    assert moves == [] and registry.champion() == new
    drifted = {"kind": "latent", "verdict": "drift", "share_drifted": 0.6}
    verdicts, moves = deploy.judge_drift(
        engine, registry.client, gates, pid, "booking", drifted, MODEL, new
    )
    # drift-alert warns (the webhook hears of it), drift-rollback acts.
    assert sorted((v.policy_id, v.effect.value) for v in verdicts if v.fired) == [
        ("drift-alert", "warn"), ("drift-rollback", "rollback")
    ]  # fmt: skip
    assert [(m.from_version, m.to_version) for m in moves] == [(new, old)]
    assert registry.champion() == old
    assert "latent drift on booking-world-model" in moves[0].reason


def test_nothing_to_roll_back_to_is_a_clear_conflict(engine: Engine, registry: Registry) -> None:
    pid = _project(engine)
    with pytest.raises(Conflict, match="nothing to roll back to"):
        deploy.rollback(engine, registry.client, pid, MODEL, "champion", "t")


def test_promote_from_the_cli_and_the_api(
    live: LiveService, registry: Registry, tmp_path: Path
) -> None:
    pid_key = live.key("booking", "admin")
    bad = registry.version({"val_loss": 0.1})
    good = registry.version(GOOD)
    env = {
        **os.environ,
        "WARDEN_DATABASE_URL": live.settings.resolved_database_url,
        "WARDEN_MLFLOW_TRACKING_URI": registry.uri,
        "WARDEN_DATA_DIR": str(tmp_path / "cli"),
    }
    warden = str(Path(sys.executable).parent / "warden")
    refused = subprocess.run(
        [warden, "promote", MODEL, bad, "--project", "booking"], env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith("refused by promotion-metrics v1: ")
    assert "NOT moved" in refused.stdout
    assert registry.champion() is None

    settings = live.settings.model_copy(update={"mlflow_tracking_uri": registry.uri})
    live.settings.__dict__.update(settings.__dict__)  # the live app reads this same object
    with live.client(pid_key) as client:
        answer = client.post(f"/v1/models/{MODEL}/promote", json={"version": bad})
        assert answer.status_code == 403
        assert "promotion-metrics" in answer.json()["detail"]
        answer = client.post(f"/v1/models/{MODEL}/promote", json={"version": good})
        assert answer.status_code == 200 and answer.json()["allowed"] is True
    assert registry.champion() == good
    with live.client(live.key("booking", "audit")) as client:
        answer = client.post(f"/v1/models/{MODEL}/rollback", json={})
        assert answer.status_code == 403  # an auditor reads; it does not act


def test_the_gates_see_the_incumbents_latest_drift_verdict(
    engine: Engine, registry: Registry
) -> None:
    from sqlalchemy import insert

    from app.store.tables import DriftReport
    from policies import parse

    pid = _project(engine)
    gates = PolicySet(
        parse(
            """
id: no-promotion-over-drift
version: "1"
description: while the incumbent drifts, promotions wait for a person
phase: deploy
when: "'drift' in incumbent && incumbent.drift.verdict == 'drift'"
effect: require_review
message: "incumbent v{{ incumbent.version }} is drifting ({{ incumbent.drift.kind }})"
"""
        )
    )
    old, new = registry.version(GOOD), registry.version(GOOD)
    assert deploy.promote(
        engine, registry.client, gates, pid, "booking", MODEL, old, "champion", "t"
    ).allowed
    with engine.begin() as conn:
        conn.execute(
            insert(DriftReport).values(
                project_id=pid, model_name=MODEL, model_version=old, kind="latent",
                window_start_unix_nano=0, window_end_unix_nano=1, reference={}, scores={},
                verdict="drift",
            )
        )  # fmt: skip
    move = deploy.promote(
        engine, registry.client, gates, pid, "booking", MODEL, new, "champion", "t"
    )
    assert not move.allowed
    assert move.failing()[0].message == f"incumbent v{old} is drifting (latent)"
    assert registry.champion() == old
