"""An experiment's results: verdicts, SRM, storage, MLflow write-back, the deploy gate."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine, select, update

from app.experiments import results
from app.experiments import settings as experiment_settings
from app.governance import deploy
from app.registry import mlflow_results
from app.store.engine import read_connection, write_transaction
from app.store.tables import Experiment
from policies import BUILTIN, PolicySet
from tests.app.experiments import traffic
from tests.app.experiments.traffic import SECOND, T0, Req
from tests.app.governance.test_deploy import GOOD, Registry

MODEL = traffic.WORLD_MODEL


def _arm(
    engine: Engine, pid: int, experiment: str, arm: str, reqs: list[Req], seed: int
) -> list[str]:
    traces = traffic.ingest(engine, pid, reqs, seed=seed)
    traffic.assign(engine, pid, experiment, arm, traces, [r.start for r in reqs])
    return traces


def ab_test(
    engine: Engine, pid: int, name: str = "wm-ab", first: str = "1", second: str = "2"
) -> None:
    """v`first` books 90% of 60 requests in ~45 ms; v`second` books 20% in ~145 ms."""
    arms = [
        ("control", f"models:/{MODEL}/{first}", 0.5),
        ("challenger", f"models:/{MODEL}/{second}", 0.5),
    ]
    traffic.experiment(engine, pid, name, arms, guardrails=["latency_p95_ms", "deny_rate"])
    control = [
        Req(start=T0 + i * SECOND, version=first, latency_ms=40.0 + i % 10,
            outcome="booked" if i % 10 else "clarify")
        for i in range(60)
    ]  # fmt: skip
    challenger = [
        Req(start=T0 + i * SECOND + 1, version=second, latency_ms=140.0 + i % 10,
            outcome="booked" if i % 5 == 0 else "clarify")
        for i in range(60)
    ]  # fmt: skip
    _arm(engine, pid, name, "control", control, seed=11)
    _arm(engine, pid, name, "challenger", challenger, seed=12)


def test_an_ab_test_finds_the_worse_challenger_and_stores_it(engine: Engine) -> None:
    pid = traffic.project(engine)
    ab_test(engine, pid)
    found = results.refresh(engine, pid, "wm-ab")

    assert found["control"] == "control" and found["srm"]["mismatch"] is False
    assert found["srm"]["counts"] == {"control": 60, "challenger": 60}
    challenger = found["arms"]["challenger"]
    assert challenger["verdict"] == "worse"
    assert challenger["kpis"]["plan_success_rate"] == pytest.approx(0.2)
    assert found["arms"]["control"]["kpis"]["plan_success_rate"] == pytest.approx(0.9)
    compared = challenger["comparisons"]["plan_success_rate"]
    assert compared["difference"] == pytest.approx(-0.7)
    assert compared["ci_low"] < -0.7 < compared["ci_high"] < 0
    assert {"plan_success_rate", "latency_p95_ms", "latency_p50_ms"} <= set(challenger["worse_on"])
    # The latency guardrail is breached; deny rates are equal (none), so that one is not.
    assert challenger["guardrails_breached"] == ["latency_p95_ms"]
    assert challenger["comparisons"]["deny_rate"]["verdict"] == "inconclusive"
    assert challenger["served"] == {f"{MODEL}/2": 60}
    curve = found["series"]["plan_success_rate"]
    assert curve and curve[-1]["arms"]["challenger"]["n"] == 60
    assert curve[-1]["differences"]["challenger"]["verdict"] == "worse"

    with read_connection(engine) as conn:
        stored, at = conn.execute(
            select(Experiment.results, Experiment.results_at).where(Experiment.name == "wm-ab")
        ).one()
    assert at is not None and stored["arms"]["challenger"]["verdict"] == "worse"

    (evidence,) = results.evidence(engine, pid, MODEL, "2")
    assert evidence["name"] == "wm-ab" and evidence["verdict"] == "worse"
    assert evidence["guardrail_breached"] is True
    assert results.evidence(engine, pid, MODEL, "1") == []  # the control is judged by nobody


def test_an_aa_test_is_inconclusive_and_a_biased_split_is_srm(engine: Engine) -> None:
    pid = traffic.project(engine)
    traffic.experiment(
        engine, pid, "aa", [("a", f"models:/{MODEL}/3", 0.5), ("b", f"models:/{MODEL}/3", 0.5)]
    )
    reqs = [
        Req(start=T0 + i * SECOND, latency_ms=40.0 + i % 7, outcome="booked" if i % 3 else "no")
        for i in range(120)
    ]
    traces = traffic.ingest(engine, pid, reqs)
    # Alternate requests to the arms: the same traffic, the same figures.
    traffic.assign(engine, pid, "aa", "a", traces[0::2], [r.start for r in reqs[0::2]])
    traffic.assign(engine, pid, "aa", "b", traces[1::2], [r.start for r in reqs[1::2]])
    found = results.refresh(engine, pid, "aa")
    assert found["srm"]["mismatch"] is False
    assert found["arms"]["b"]["verdict"] == "inconclusive"
    assert found["arms"]["b"]["worse_on"] == [] and found["arms"]["b"]["better_on"] == []

    # A split configured 50/50 that served 100 against 20 is not to be trusted.
    traffic.experiment(
        engine, pid, "biased", [("a", f"models:/{MODEL}/3", 0.5), ("b", f"models:/{MODEL}/3", 0.5)]
    )
    traffic.assign(engine, pid, "biased", "a", traces[:100], [r.start for r in reqs[:100]])
    traffic.assign(engine, pid, "biased", "b", traces[100:], [r.start for r in reqs[100:]])
    skewed = results.refresh(engine, pid, "biased")
    assert skewed["srm"]["mismatch"] is True
    assert skewed["srm"]["expected"] == {"a": 60.0, "b": 60.0}
    assert skewed["arms"]["b"]["verdict"] == "invalid: SRM"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_results_are_written_back_to_mlflow_by_the_worker(engine: Engine, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pid = traffic.project(engine)
    ab_test(engine, pid)
    worker = results.ResultsWorker(engine, uri, 60.0)
    worker.tick()

    (run_id,) = mlflow_results.find_results(uri, "experiment", MODEL, "2")
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.data.tags["warden.result"] == "experiment"
    assert run.data.tags["warden.experiment"] == "wm-ab"
    assert run.data.tags["warden.experiment.arm"] == "challenger"
    assert run.data.tags["warden.experiment.verdict"] == "worse"
    assert run.data.tags["warden.verdict.plan_success_rate"] == "worse"
    assert run.data.tags["warden.experiment.guardrails_breached"] == "latency_p95_ms"
    assert run.data.tags[mlflow_results.PROJECT_TAG] == "booking"
    metrics = run.data.metrics
    assert metrics["plan_success_rate.difference"] == pytest.approx(-0.7)
    assert metrics["plan_success_rate.ci_high"] < 0
    assert metrics["plan_success_rate.control"] == pytest.approx(0.9)
    assert metrics["n.treatment"] == 60

    # Nothing changed: the next round refreshes the results but writes no new run.
    worker.tick()
    assert len(mlflow_results.find_results(uri, "experiment")) == 1
    with read_connection(engine) as conn:
        stored = conn.execute(select(Experiment.results)).scalar_one()
    assert stored["mlflow"]["run_ids"] == [run_id]

    # Once stopped, the experiment gets its final results and run, then is left alone.
    with write_transaction(engine) as conn:
        conn.execute(update(Experiment).values(status="stopped", stopped_at=datetime.now(UTC)))
    worker.tick()
    worker.tick()
    assert len(mlflow_results.find_results(uri, "experiment")) == 2
    with read_connection(engine) as conn:
        final = conn.execute(select(Experiment.results)).scalar_one()
    assert final["mlflow"]["final"] is True


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_deploy_gate_refuses_a_version_an_experiment_found_worse(
    engine: Engine, tmp_path: Path
) -> None:
    registry = Registry(tmp_path)
    gates = PolicySet.load_dir(BUILTIN)
    first, second, third = (registry.version(GOOD) for _ in range(3))
    pid = traffic.project(engine)
    ab_test(engine, pid, first=first, second=second)

    allowed = deploy.promote(engine, registry.client, gates, pid, "booking", MODEL, first,
                             "champion", "t")  # fmt: skip
    assert allowed.allowed

    refused = deploy.promote(engine, registry.client, gates, pid, "booking", MODEL, second,
                             "champion", "t")  # fmt: skip
    assert not refused.allowed and registry.champion() == first
    (failing,) = refused.failing()
    assert failing.policy_id == "experiment-evidence"
    assert f"{MODEL} v{second} was found worse by experiment wm-ab on" in failing.message
    assert "plan_success_rate, latency_p95_ms" in failing.message

    # A version nobody experimented with passes, until the project requires evidence.
    experiment_settings.update_settings(engine, pid, {"require_experiment": True})
    required = deploy.promote(engine, registry.client, gates, pid, "booking", MODEL, third,
                              "champion", "t")  # fmt: skip
    (failing,) = required.failing()
    assert "has no experiment evidence" in failing.message
    experiment_settings.update_settings(engine, pid, {"require_experiment": False})
    assert deploy.promote(engine, registry.client, gates, pid, "booking", MODEL, third,
                          "champion", "t").allowed  # fmt: skip
