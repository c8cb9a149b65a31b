from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from examples.booking.errors import RegistryError
from examples.booking.registry import (
    CONFIG_HASH_TAG,
    RegisteredWorldModel,
    TrainingSpec,
    load_world_model,
    register_world_model,
)
from examples.booking.sim import Calendar, Intent, generate_dataset, sample_actions
from examples.booking.world_model import (
    TrainConfig,
    WorldModel,
    rollout_inputs,
    train_world_model,
)

TINY = TrainingSpec(n_samples=2000, train=TrainConfig(epochs=1))


@dataclass
class Store:
    uri: str
    root: Path
    first: RegisteredWorldModel

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    return Store(uri, root, register_world_model(TINY, uri))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    calendar, intent = Calendar.generate(seed=3), Intent(6, 1, 15, 2, frozenset({"projector"}))
    actions = sample_actions(intent, calendar, 16, np.random.default_rng(0))
    return rollout_inputs(intent, actions, calendar)


def _predict(model: torch.nn.Module) -> torch.Tensor:
    state, action = _batch()
    with torch.no_grad():
        out = model(state, action)
    return torch.cat([out.conflict_logit, out.utilisation, out.cost, out.latents.flatten()])


def test_register_then_load_gives_identical_predictions(store: Store) -> None:
    assert not store.first.reused and store.first.version == "1"
    loaded = load_world_model(store.uri, "models:/booking-world-model@champion")
    assert isinstance(loaded.model, WorldModel) and not loaded.model.training
    assert (loaded.name, loaded.version, loaded.run_id) == (
        "booking-world-model",
        "1",
        store.first.run_id,
    )
    by_version = load_world_model(store.uri, "models:/booking-world-model/1")
    assert torch.equal(_predict(loaded.model), _predict(by_version.model))
    # The weights are those the run trained: the same spec trains them again bit for bit.
    retrained = train_world_model(
        generate_dataset(TINY.n_samples, seed=TINY.data_seed), train_config=TINY.train
    )
    assert torch.equal(_predict(loaded.model), _predict(retrained.model))
    # The pytorch flavor loads back too, for anyone using MLflow's own loader.
    source = store.client().get_model_version_download_uri("booking-world-model", "1")
    flavor = mlflow.pytorch.load_model(source)
    assert torch.equal(_predict(loaded.model), _predict(flavor))


def test_registry_records_lineage(store: Store) -> None:
    client = store.client()
    version = client.get_model_version("booking-world-model", "1")
    assert version.tags[CONFIG_HASH_TAG] == TINY.config_hash() == store.first.config_hash
    assert version.tags["warden.role"] == "world_model"
    assert version.tags["training.dataset.digest"] == store.first.dataset_digest
    champion = client.get_model_version_by_alias("booking-world-model", "champion")
    assert str(champion.version) == "1"
    assert client.get_registered_model("booking-world-model").tags["warden.stack"] == (
        "booking-assistant"
    )
    run = client.get_run(store.first.run_id)
    assert run.data.params["data.n_samples"] == "2000"
    assert run.data.metrics["val_loss"] < run.data.metrics["initial_val_loss"]
    assert 0.0 <= run.data.metrics["val_conflict_auc"] <= 1.0
    assert run.inputs is not None
    [dataset_input] = run.inputs.dataset_inputs
    assert (
        dataset_input.dataset.name == store.first.dataset_name == "booking-sim-n2000-seed0-shift0"
    )
    assert dataset_input.dataset.digest == store.first.dataset_digest
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    # Every artifact lives beside the store, none in the working directory.
    artifacts = store.root / "mlartifacts"
    assert list(artifacts.rglob("state_dict.pt")) and list(artifacts.rglob("*.parquet"))


def test_second_call_reuses_the_registered_version(store: Store) -> None:
    again = register_world_model(TINY, store.uri)
    assert again.reused
    assert (again.version, again.run_id) == (store.first.version, store.first.run_id)
    client = store.client()
    assert len(client.search_model_versions("name='booking-world-model'")) == 1
    experiment = client.get_experiment_by_name("booking-world-model")
    assert experiment is not None
    assert len(client.search_runs([experiment.experiment_id])) == 1


def test_new_spec_makes_a_new_champion_and_old_versions_stay_loadable(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = register_world_model(TINY, uri)
    shifted = register_world_model(TrainingSpec(n_samples=1000, shift=1.0, train=TINY.train), uri)
    assert (first.version, shifted.version) == ("1", "2") and not shifted.reused
    assert load_world_model(uri).version == "2"
    assert load_world_model(uri, "models:/booking-world-model/1").version == "1"
    # Reusing version 1 does not take the alias back from version 2.
    assert register_world_model(TINY, uri).reused
    assert load_world_model(uri).version == "2"


def test_the_callers_mlflow_setup_is_left_alone(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = f"sqlite:///{tmp_path}/elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    register_world_model(TINY, store.uri)
    load_world_model(store.uri)
    assert os.environ["MLFLOW_TRACKING_URI"] == elsewhere
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == elsewhere
    assert not (tmp_path / "elsewhere.db").exists()


def test_loading_a_missing_model_says_what_to_do(store: Store) -> None:
    with pytest.raises(RegistryError, match="register_world_model"):
        load_world_model(store.uri, "models:/no-such-model@champion")
    with pytest.raises(RegistryError, match="models:/"):
        load_world_model(store.uri, "runs:/abc/world_model")
