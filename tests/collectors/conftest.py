"""The SDK's tests run against a live service on SQLite (storage itself is tested on both)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import collectors


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'warden.db'}"


@pytest.fixture(autouse=True)
def _no_client_left() -> Iterator[None]:
    yield
    collectors.shutdown(timeout=5)
