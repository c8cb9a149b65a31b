"""Fixtures of the booking example: one small world model trained once per test session, and
the demo's champion and challenger registered once per session in an MLflow store.

The small model is trained on 6,000 simulated rows for 5 epochs (about a second on 2 cores):
enough for the planner to tell free rooms from taken ones, small enough to keep the suite fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from examples.booking.registry import (
    RegisteredWorldModel,
    register_challenger,
    register_world_model,
)
from examples.booking.sim import generate_dataset
from examples.booking.world_model import TrainConfig, TrainResult, train_world_model


@dataclass
class Store:
    uri: str
    champion: RegisteredWorldModel
    challenger: RegisteredWorldModel


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The demo's two world models in a local MLflow store (SQLite), trained from their real
    specs (about 20 s on 2 cores), once per session: the champion is v1 under `@champion`,
    the challenger v2 under `@challenger`. Tests must leave the aliases where they are."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    return Store(uri, register_world_model(None, uri), register_challenger(uri))


@pytest.fixture(scope="session")
def trained() -> TrainResult:
    return train_world_model(generate_dataset(6_000, seed=0), train_config=TrainConfig(epochs=5))


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The example's end-to-end tests use the embedded default store, SQLite."""
    return f"sqlite:///{tmp_path / 'warden.db'}"
