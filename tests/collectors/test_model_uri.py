"""`collectors.model()` resolves an MLflow alias to its version, against a real registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import collectors


def test_an_alias_resolves_to_its_version_once_at_load_time(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("booking-world-model")
    for _ in range(3):
        client.create_model_version("booking-world-model", source=str(tmp_path))
    client.set_registered_model_alias("booking-world-model", "champion", "2")

    ref = collectors.model("world_model", "models:/booking-world-model@champion", tracking_uri=uri)
    assert (ref.name, ref.version) == ("booking-world-model", "2")
    # Moving the alias later does not change what this process declared it loaded.
    client.set_registered_model_alias("booking-world-model", "champion", "3")
    assert ref.version == "2"
    pinned = collectors.model("world_model", "models:/booking-world-model/1", tracking_uri=uri)
    assert pinned.version == "1"
    with pytest.raises(ValueError, match="name a version"):
        collectors.model("world_model", "models:/booking-world-model", tracking_uri=uri)
    with pytest.raises(ValueError, match="needs a version"):
        collectors.model("planner", "mpc-planner")
