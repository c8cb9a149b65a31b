"""Demo traffic traced by the service's resolver to the run and data its training logged.

Run against the embedded SQLite MLflow store and against a real `mlflow server` over HTTP.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from app.registry import lineage
from examples.booking import demo
from examples.booking.registry import TrainingSpec
from examples.booking.world_model import TrainConfig
from tests.conftest import LiveService
from tests.examples.test_demo import all_requests

MODEL = "booking-world-model"


def world_model_stages(live: LiveService, key: str) -> dict[str, dict[str, Any]]:
    with live.client(key) as client:
        ids = [r["request_id"] for r in all_requests(client)]
        found = {}
        for request_id in ids:
            chain = client.get(f"/v1/requests/{request_id}/lineage").raise_for_status().json()
            found[request_id] = next(s for s in chain["stages"] if s["role"] == "world_model")
    return found


@pytest.mark.parametrize("store", ["local", "server"])
def test_every_demo_request_names_the_version_run_and_dataset_training_logged(
    live: LiveService, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    uri = (
        request.getfixturevalue("mlflow_server")
        if store == "server"
        else f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    key = live.key("default", "ingest", "read")
    result = demo.run(
        live.url, key, uri,
        fingerprint_secret="lineage-test",
        spool_dir=tmp_path / "spool",
        requests=25,
        spec=TrainingSpec(n_samples=1500, data_seed=7, train=TrainConfig(epochs=1)),
        log=lambda _line: None,
    )  # fmt: skip
    assert result.delivered and result.requests == 25

    # What training logged, read from MLflow itself.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(champion.run_id)
    (logged,) = run.inputs.dataset_inputs
    assert logged.dataset.digest

    resolver = lineage.Resolver(live.engine, uri, 0.2)
    resolver.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            stages = world_model_stages(live, key)
            if all(s["status"] == "resolved" for s in stages.values()):
                break
            assert time.monotonic() < deadline, "the resolver did not resolve the demo's model"
            time.sleep(0.5)
    finally:
        resolver.stop()
    assert len(stages) == 25
    for stage in stages.values():
        assert stage["name"] == MODEL and stage["version"] == str(champion.version)
        assert stage["run"]["id"] == champion.run_id
        assert [(d["name"], d["digest"], d["context"]) for d in stage["datasets"]] == [
            (logged.dataset.name, logged.dataset.digest, "training")
        ]
        assert "champion" in stage["aliases"]

    # MLflow forgets the run; what Warden stored still answers, refreshed or not.
    client.delete_run(champion.run_id)
    lineage.resolve_pending(live.engine, lineage.mlflow_client(uri), refresh_after=0)
    for request_id, kept in world_model_stages(live, key).items():
        assert kept["run"] == stages[request_id]["run"]
        assert kept["datasets"] == stages[request_id]["datasets"]
