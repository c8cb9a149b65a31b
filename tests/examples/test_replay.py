"""Counterfactual replay of a stored request with another world-model version."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path

from examples.booking import demo
from examples.booking.registry import TrainingSpec, register_world_model
from examples.booking.world_model import TrainConfig
from tests.conftest import LiveService

SECRET = "replay-secret"


def test_replay_differs_with_another_version_and_not_with_the_same(
    live: LiveService, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    key = live.key("default", "ingest", "read")
    result = demo.run(
        live.url, key, uri, fingerprint_secret=SECRET, spool_dir=tmp_path / "spool",
        requests=5, spec=TrainingSpec(n_samples=3000, train=TrainConfig(epochs=2)),
        log=lambda _line: None,
    )  # fmt: skip
    # A deliberately different world model: trained on a tenth of the data for one epoch.
    other = register_world_model(
        TrainingSpec(n_samples=300, data_seed=9, train=TrainConfig(epochs=1)), uri
    )
    with live.client(key) as client:
        items = client.get("/v1/requests").json()["items"]
    by_fingerprint = {
        hmac.new(SECRET.encode(), json.dumps({"text": t}, sort_keys=True, separators=(",", ":"),
                 ensure_ascii=False).encode(), hashlib.sha256).hexdigest(): t
        for t in result.texts
    }  # fmt: skip
    booked = next(i for i in items if i["outcome"] == "booked")
    text = by_fingerprint[booked["fingerprint"]]
    served = booked["models"]["world_model"]

    env = {
        **os.environ,
        "WARDEN_DATABASE_URL": live.settings.resolved_database_url,
        "WARDEN_MLFLOW_TRACKING_URI": uri,
        "WARDEN_FINGERPRINT_SECRET": SECRET,
        "COLUMNS": "250",
    }
    warden = str(Path(sys.executable).parent / "warden")

    def run(version: str, given: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [warden, "replay", booked["request_id"], "--model", served["name"],
             "--version", version, "--input", given],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    same = run(served["version"], json.dumps({"text": text}))
    assert same.returncode == 0, same.stderr
    assert same.stdout.strip().endswith("same decision")
    changed = run(other.version, json.dumps({"text": text}))
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip().endswith("the decisions differ")
    assert f"v{other.version}" in changed.stdout and "chosen" in changed.stdout
    assert "candidate 1" in changed.stdout and " p(conflict)=" in changed.stdout

    forged = run(other.version, json.dumps({"text": text + " "}))
    assert forged.returncode == 1
    assert "does not match the stored request's fingerprint" in forged.stderr
