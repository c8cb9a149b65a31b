"""Warden's results logged as MLflow runs, on the embedded store and on a real server."""

from __future__ import annotations

import math
from pathlib import Path

import mlflow.artifacts
import pytest
from mlflow.tracking import MlflowClient

from app.registry import mlflow_results
from app.registry.mlflow_results import Result


@pytest.mark.parametrize("store", ["local", "server"])
def test_a_result_is_a_run_in_the_warden_experiment_with_its_artifacts(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    uri = (
        request.getfixturevalue("mlflow_server")
        if store == "server"
        else f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    version = tmp_path.name  # a server's store is shared by the session's tests
    result = Result(
        kind="drift",
        project="booking",
        model_name="booking-world-model",
        model_version=version,
        params={"window": "1h", "permutations": 100},
        metrics={"latent.encoder.p_value": 0.004, "inputs.share": 0.25, "bad": math.nan},
        tags={"warden.verdict": "drift"},
        artifacts={"report/inputs.html": "<html>drift</html>", "scores.json": b'{"a": 1}'},
    )
    run_id = mlflow_results.log_result(uri, result)
    second = mlflow_results.log_result(uri, result)  # the experiment is reused
    assert second != run_id

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "warden"
    assert run.info.status == "FINISHED"
    assert run.data.tags["warden.model.name"] == "booking-world-model"
    assert run.data.tags["warden.model.version"] == version
    assert run.data.tags["warden.result"] == "drift"
    assert run.data.tags["warden.verdict"] == "drift"
    assert run.data.metrics == {"latent.encoder.p_value": 0.004, "inputs.share": 0.25}
    assert run.data.params == {"window": "1h", "permutations": "100"}
    local = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="report/inputs.html", dst_path=str(tmp_path / "dl"),
            tracking_uri=uri,
        )
    )  # fmt: skip
    assert local.read_text() == "<html>drift</html>"
    if store == "local":  # beside the store, never in the working directory
        assert (tmp_path / "mlartifacts").is_dir()

    newest = mlflow_results.log_result(uri, result)
    found = mlflow_results.find_results(uri, "drift", "booking-world-model", version)
    assert len(found) == 3 and found[0] == newest and run_id in found
    assert mlflow_results.find_results(uri, "export", "booking-world-model", version) == []
