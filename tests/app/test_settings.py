"""Settings precedence (environment over warden.toml over defaults) and readiness."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.config import Settings
from app.main import create_app
from tests.conftest import free_port, shared_keys


def test_defaults_are_the_embedded_set_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.resolved_database_url == "sqlite:///.warden/warden.db"
    assert settings.resolved_mlflow_tracking_uri == "sqlite:///.warden/mlflow.db"
    assert (settings.host, settings.port, settings.payload_limit_bytes) == (
        "127.0.0.1",
        8000,
        8 << 20,
    )


def test_environment_overrides_warden_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "warden.toml").write_text(
        'port = 9100\npayload_limit_bytes = 1024\nhost = "0.0.0.0"\n'
    )
    monkeypatch.setenv("WARDEN_PORT", "9200")
    settings = Settings()
    assert (settings.port, settings.payload_limit_bytes, settings.host) == (9200, 1024, "0.0.0.0")
    other = tmp_path / "elsewhere.toml"
    other.write_text('database_url = "postgresql+psycopg://w@db/w"\n')
    monkeypatch.setenv("WARDEN_CONFIG", str(other))
    assert Settings().resolved_database_url == "postgresql+psycopg://w@db/w"


def test_server_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    first = settings.server_secret()
    assert len(first) >= 48
    assert Settings(data_dir=tmp_path / "d").server_secret() == first
    assert (tmp_path / "d" / "secret.key").stat().st_mode & 0o077 == 0


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
        secret_key="s",
        **shared_keys("postgresql", tmp_path),
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30)
        assert answer.status_code == 503
        assert answer.json()["status"] == "unavailable"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
