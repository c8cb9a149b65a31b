"""Shared fixtures: real databases (a SQLite file, a PostgreSQL server) and a live service.

The PostgreSQL server is Debian's package, started once per test session by `initdb` into a
temporary folder and listening on 127.0.0.1 only. PostgreSQL refuses to run as root, so as
root the server runs as the `postgres` user (or `nobody`). Set WARDEN_TEST_POSTGRES_URL to
use a server you already run instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from app.audit import heads
from app.config import Settings
from app.errors import Conflict
from app.main import create_app
from app.store import schema
from app.store.engine import create_db_engine
from app.tenancy import projects
from tests.servers import PostgresServer, free_port, postgres_server
from tests.servers import mlflow_server as start_mlflow_server

TEST_SECRET = "test-server-secret"
TEST_FINGERPRINT_SECRET = "test-fingerprint-secret"


def shared_keys(database_url: str, folder: Path) -> dict[str, Any]:
    """On PostgreSQL, the secrets every process must share (app/deployment_keys.py) beside
    the server secret: the fingerprint secret and a signing key file in `folder`, made from a
    fixed seed so every test process signs with the same key. SQLite: none (unchanged)."""
    if not database_url.startswith("postgresql"):
        return {}
    key_file = folder / "shared-signing.key"
    if not key_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            heads.save_private_key(Ed25519PrivateKey.from_private_bytes(bytes(32)), key_file)
    return {"fingerprint_secret": TEST_FINGERPRINT_SECRET, "audit_signing_key": key_file}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    external = os.environ.get("WARDEN_TEST_POSTGRES_URL")
    if external:
        info = psycopg.conninfo.conninfo_to_dict(external.replace("+psycopg", ""))
        yield PostgresServer(
            str(info.get("host", "127.0.0.1")), int(info.get("port", 5432)), str(info["user"])
        )
        return
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind: a fresh SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warden.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield server.url(name)
    with server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Lineage resolution runs only where a test asks for it (it imports MLflow).
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET,
        lineage_interval=0,
        drift_tick=0,
        audit_checkpoint_interval=0,
        **shared_keys(database_url, tmp_path),
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    yield engine
    engine.dispose()


@dataclass
class LiveService:
    url: str
    settings: Settings
    engine: Engine

    def key(self, project: str, *scopes: str) -> str:
        """A key for `project` (created when missing) with the given scopes."""
        with contextlib.suppress(Conflict):
            projects.create_project(self.engine, project)
        return projects.create_key(self.engine, TEST_SECRET.encode(), project, list(scopes))

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def live(settings: Settings, engine: Engine) -> Iterator[LiveService]:
    """The service on a free port of 127.0.0.1, served by uvicorn in a thread of this process."""
    with running(settings, engine) as service:
        yield service


def embedded_settings(root: Path, **overrides: Any) -> Settings:
    """A service on the embedded stores under `root` (SQLite, MLflow's SQLite store), with
    lineage resolution and the drift schedule off unless `overrides` say otherwise."""
    values: dict[str, Any] = {
        "data_dir": root / "data",
        "database_url": f"sqlite:///{root / 'warden.db'}",
        "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "secret_key": TEST_SECRET,
        "lineage_interval": 0,
        "drift_tick": 0,
    }
    return Settings(**(values | overrides))


@contextlib.contextmanager
def running(settings: Settings, engine: Engine) -> Iterator[LiveService]:
    """`live`, for fixtures of a wider scope."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield LiveService(f"http://127.0.0.1:{port}", settings, engine)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class ServeProcess:
    """`warden serve` as a real process; `key` is the admin key it printed on first run."""

    proc: subprocess.Popen[str]
    url: str
    key: str


@contextlib.contextmanager
def warden_serve(
    tmp_path: Path,
    database_url: str,
    *args: str,
    secret: str = "serve-secret",
    port: int | None = None,
    first_run: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[ServeProcess]:
    """Run `warden serve`; with `first_run`, wait for the key it prints on an empty store.
    `env` adds to (or overrides) its environment."""
    port = port or free_port()
    environment = {
        **os.environ,
        "WARDEN_DATA_DIR": str(tmp_path / "data"),
        "WARDEN_DATABASE_URL": database_url,
        "WARDEN_SECRET_KEY": secret,
        "WARDEN_LINEAGE_INTERVAL": "0",
        "WARDEN_DRIFT_TICK": "0",
        "WARDEN_AUDIT_CHECKPOINT_INTERVAL": "0",
        **{f"WARDEN_{k.upper()}": str(v) for k, v in shared_keys(database_url, tmp_path).items()},
        **(env or {}),
    }
    warden = str(Path(sys.executable).parent / "warden")
    proc = subprocess.Popen(
        [warden, "serve", "--port", str(port), *args],
        env=environment,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        key = ""
        deadline = time.monotonic() + 60
        while first_run and not key and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            key = next((w for w in line.split() if w.startswith("wdn_")), "")
        assert key or not first_run, "warden serve printed no first-run key"
        # Keep reading its output, so a full pipe can never stall the server.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        url = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield ServeProcess(proc, url, key)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` process on 127.0.0.1, with a SQLite store of its own."""
    with start_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url
