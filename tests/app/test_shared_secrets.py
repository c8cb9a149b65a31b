"""On PostgreSQL every process of a deployment shares one server secret, fingerprint secret and
audit signing key, checked against the `deployment_keys` records (app/deployment_keys.py):
real `warden serve` processes with different data folders on the real server."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, select
from typer.testing import CliRunner

from app.audit import heads
from app.audit.ledger import list_events
from app.cli import app as cli
from app.config import Settings, secret_key_id
from app.deployment_keys import KEYS, SERVER_SECRET, SharedSecretRefused, check_shared_secrets
from app.main import create_app
from app.store import schema
from app.store.engine import create_db_engine
from app.tenancy import projects
from tests.conftest import warden_serve

POSTGRES_ONLY = [pytest.param("postgresql", marks=pytest.mark.postgres)]
WARDEN = str(Path(sys.executable).parent / "warden")


def _records(database_url: str) -> dict[str, str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {r.name: r.key_id for r in conn.execute(select(KEYS))}
    finally:
        engine.dispose()


def _bare_env(root: Path, database_url: str, **extra: str) -> dict[str, str]:
    """A `warden` environment with no secret configured at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    return env | {"WARDEN_DATA_DIR": str(root / "data"), "WARDEN_DATABASE_URL": database_url,
                  "WARDEN_LINEAGE_INTERVAL": "0", "WARDEN_DRIFT_TICK": "0"} | extra  # fmt: skip


def _serve(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`warden serve` expected to refuse: it exits by itself."""
    root.mkdir(exist_ok=True)
    return subprocess.run(
        [WARDEN, "serve", "--port", "1"], env=env, cwd=root, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def _keys_init(folder: Path) -> dict[str, str]:
    done = subprocess.run([WARDEN, "keys", "init", str(folder)], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert "warden.env" in done.stdout
    lines = (folder / "warden.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


@pytest.mark.parametrize("database_url", POSTGRES_ONLY, indirect=True)
def test_processes_without_configured_secrets_refuse_in_one_line_and_record_nothing(
    database_url: str, tmp_path: Path
) -> None:
    for name in ("one", "two"):
        done = _serve(tmp_path / name, _bare_env(tmp_path / name, database_url))
        assert done.returncode != 0
        message = done.stderr.strip()
        assert len(message.splitlines()) == 1, message
        assert "WARDEN_SECRET_KEY is not set" in message and "warden keys init" in message
        # It made no key of its own on the way.
        assert not (tmp_path / name / "data" / "secret.key").exists()
        assert not (tmp_path / name / "data" / "audit-signing.key").exists()
    assert _records(database_url) == {}


@pytest.mark.parametrize("database_url", POSTGRES_ONLY, indirect=True)
def test_processes_sharing_the_keys_serve_one_deployment(database_url: str, tmp_path: Path) -> None:
    shared = _keys_init(tmp_path / "keys")
    assert (tmp_path / "keys" / "warden.env").stat().st_mode & 0o077 == 0
    assert (tmp_path / "keys" / "audit-signing.key").stat().st_mode & 0o077 == 0
    # Never overwrites.
    again = subprocess.run([WARDEN, "keys", "init", str(tmp_path / "keys")], capture_output=True,
                           text=True, timeout=60, check=False)  # fmt: skip
    assert again.returncode != 0 and "exists already" in again.stderr
    assert (tmp_path / "keys" / "warden.env").read_text().count(shared["WARDEN_SECRET_KEY"]) == 1

    env = {"WARDEN_FINGERPRINT_SECRET": shared["WARDEN_FINGERPRINT_SECRET"],
           "WARDEN_AUDIT_SIGNING_KEY": shared["WARDEN_AUDIT_SIGNING_KEY"]}  # fmt: skip
    roots = [tmp_path / "one", tmp_path / "two"]
    for root in roots:
        root.mkdir()
    secret = shared["WARDEN_SECRET_KEY"]
    with (
        warden_serve(roots[0], database_url, secret=secret, env=env) as one,
        warden_serve(roots[1], database_url, secret=secret, first_run=False, env=env) as two,
    ):
        assert one.proc.poll() is None and two.proc.poll() is None
        # The admin key the first printed works on the second; a key made through the
        # second's settings (its own data folder) works on the first.
        def key_create(root: Path) -> str:
            made = subprocess.run(
                [WARDEN, "key", "create", "--project", "default", "--scope", "read"],
                env=_bare_env(root, database_url, WARDEN_SECRET_KEY=secret, **env),
                capture_output=True, text=True, timeout=60, check=True,
            )  # fmt: skip
            return next(w for w in made.stdout.split() if w.startswith("wdn_"))

        for key in (one.key, key_create(roots[1])):
            for server in (one, two):
                bearer = {"Authorization": f"Bearer {key}"}
                answer = httpx.get(f"{server.url}/v1/requests", headers=bearer, timeout=30)
                assert answer.status_code == 200, (server.url, answer.text)
        # Heads signed through either verify with the one public key.
        public = heads.load_private_key(shared["WARDEN_AUDIT_SIGNING_KEY"]).public_key()
        admin = {"Authorization": f"Bearer {one.key}"}
        signed = []
        for root, server in zip(roots, (one, two), strict=True):
            key_create(root)  # the ledger grows (key.created)
            answer = httpx.post(f"{server.url}/v1/audit/heads", headers=admin, timeout=30)
            answer.raise_for_status()
            signed.append(heads.head_from_json(answer.json()))
        assert signed[0].tree_size < signed[1].tree_size
        assert all(heads.verify_head(head, public) for head in signed)

    records = _records(database_url)
    assert records[SERVER_SECRET] == secret_key_id(SERVER_SECRET, secret.encode())
    assert set(records) == {"server_secret", "fingerprint_secret", "audit_signing_key"}
    assert records["audit_signing_key"] == signed[0].key_id

    # `warden keys show` puts this process's ids beside the records.
    shown = subprocess.run(
        [WARDEN, "keys", "show"], capture_output=True, text=True, timeout=60, check=True,
        env=_bare_env(roots[0], database_url, WARDEN_SECRET_KEY=secret, **env),
    )  # fmt: skip
    assert shown.stdout.count("same") == 3, shown.stdout
    assert records[SERVER_SECRET] in shown.stdout and secret not in shown.stdout

    # A third process with another server secret refuses, naming the recorded key id.
    refused = _serve(tmp_path / "three", _bare_env(
        tmp_path / "three", database_url, WARDEN_SECRET_KEY="another-secret", **env))  # fmt: skip
    message = refused.stderr.strip()
    assert refused.returncode != 0 and len(message.splitlines()) == 1, message
    assert "WARDEN_SECRET_KEY differs from the one the deployment records" in message
    assert f"key id {records[SERVER_SECRET]}" in message
    assert _records(database_url) == records


@pytest.mark.parametrize("database_url", POSTGRES_ONLY, indirect=True)
def test_an_embedded_app_with_a_differing_signing_key_does_not_start(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    check_shared_secrets(engine, settings)  # the first records the deployment's keys
    other = tmp_path / "other.key"
    heads.save_private_key(heads.generate_key(), other)
    app = create_app(settings.model_copy(update={"audit_signing_key": other}))
    refused = pytest.raises(SharedSecretRefused, match="WARDEN_AUDIT_SIGNING_KEY differs")
    with refused, TestClient(app):
        pass


@pytest.mark.parametrize("database_url", POSTGRES_ONLY, indirect=True)
def test_two_first_processes_at_once_agree_on_one_record(
    settings: Settings, engine: Engine
) -> None:
    others = [settings.model_copy(update={"secret_key": f"s{n}"}) for n in range(4)]
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda s: _outcome(engine, s), others))
    assert outcomes.count("ok") == 1, outcomes
    assert all("differs" in o for o in outcomes if o != "ok")


def _outcome(engine: Engine, settings: Settings) -> str:
    try:
        check_shared_secrets(engine, settings)
    except SharedSecretRefused as exc:
        return exc.message
    return "ok"


@pytest.mark.parametrize("database_url", POSTGRES_ONLY, indirect=True)
def test_rotating_the_signing_key_records_it_and_tells_every_ledger(
    settings: Settings, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    projects.create_project(engine, "shop")
    check_shared_secrets(engine, settings)
    new = tmp_path / "next.key"
    heads.save_private_key(heads.generate_key(), new)
    new_id = heads.key_id(heads.load_private_key(new).public_key())
    for name, value in {"WARDEN_DATA_DIR": str(settings.data_dir),
                        "WARDEN_DATABASE_URL": settings.database_url,
                        "WARDEN_SECRET_KEY": settings.secret_key,
                        "WARDEN_FINGERPRINT_SECRET": settings.fingerprint_secret,
                        "WARDEN_AUDIT_SIGNING_KEY": str(new)}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    unconfirmed = runner.invoke(cli, ["keys", "rotate", "signing-key"])
    assert unconfirmed.exit_code == 1 and _records(settings.database_url)[
        "audit_signing_key"] != new_id  # fmt: skip
    done = runner.invoke(cli, ["keys", "rotate", "signing-key", "--yes"])
    assert done.exit_code == 0, done.output
    assert _records(settings.database_url)["audit_signing_key"] == new_id
    events = list_events(engine, projects.project_id(engine, "shop")).items
    rotated = [e for e in events if e.kind == "signing_key.rotated"]
    assert len(rotated) == 1 and rotated[0].payload["new_key_id"] == new_id
    # The old key refuses now; the new one serves.
    with pytest.raises(SharedSecretRefused, match="rotate signing-key"):
        check_shared_secrets(engine, settings)
    check_shared_secrets(engine, settings.model_copy(update={"audit_signing_key": new}))


def test_sqlite_checks_nothing_and_makes_keys_in_the_data_folder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'w.db'}")
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    try:
        check_shared_secrets(engine, settings)
        settings.server_secret()
        check_shared_secrets(engine, settings)
        with engine.connect() as conn:
            assert conn.execute(select(KEYS)).first() is None
    finally:
        engine.dispose()
    assert (tmp_path / "data" / "secret.key").exists()
