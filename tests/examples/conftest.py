"""Fixtures of the booking example: one small world model trained once per test session.

The model is trained on 6,000 simulated rows for 5 epochs (about a second on 2 cores): enough
for the planner to tell free rooms from taken ones, small enough to keep the suite fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.booking.sim import generate_dataset
from examples.booking.world_model import TrainConfig, TrainResult, train_world_model


@pytest.fixture(scope="session")
def trained() -> TrainResult:
    return train_world_model(generate_dataset(6_000, seed=0), train_config=TrainConfig(epochs=5))


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The example's end-to-end tests use the embedded default store, SQLite."""
    return f"sqlite:///{tmp_path / 'warden.db'}"
