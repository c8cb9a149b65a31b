"""`warden project` and `warden key`, run as real processes."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests import otlp
from tests.app.cli.warden_process import warden
from tests.conftest import TEST_SECRET, LiveService


def test_projects_and_keys_from_the_cli(tmp_path: Path, database_url: str) -> None:
    assert warden(tmp_path, database_url, "migrate").returncode == 0
    created = warden(tmp_path, database_url, "project", "create", "shop")
    assert created.returncode == 0, created.stderr
    again = warden(tmp_path, database_url, "project", "create", "shop")
    assert again.returncode == 1
    assert again.stderr.strip() == "error: project 'shop' exists already"

    made = warden(
        tmp_path,
        database_url,
        "key",
        "create",
        "--project",
        "shop",
        "--scope",
        "ingest",
        "--scope",
        "read",
        "--name",
        "pods",
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("wdn_") and len(key) == 42

    listed = warden(tmp_path, database_url, "key", "list", "--project", "shop")
    assert key[:12] in listed.stdout
    assert key not in listed.stdout
    assert "ingest,read" in listed.stdout

    assert warden(tmp_path, database_url, "key", "revoke", key[:12]).returncode == 0
    gone = warden(tmp_path, database_url, "key", "revoke", key[:12])
    assert gone.returncode == 1
    assert "no active key" in gone.stderr

    missing = warden(
        tmp_path, database_url, "key", "create", "--project", "nope", "--scope", "read"
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().endswith("create it with `warden project create nope`")


def test_a_cli_key_works_against_the_service_until_revoked(
    live: LiveService, tmp_path: Path
) -> None:
    url = live.settings.resolved_database_url
    assert warden(tmp_path, url, "project", "create", "shop", secret=TEST_SECRET).returncode == 0
    made = warden(
        tmp_path, url, "key", "create", "--project", "shop", "--scope", "ingest", secret=TEST_SECRET
    )
    key = made.stdout.strip()
    body = otlp.request(otlp.hybrid_trace(otlp.Ids(1))).SerializeToString()
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}) as client:
        assert client.post("/v1/traces", content=body, headers=otlp.PROTOBUF).status_code == 200
        assert warden(tmp_path, url, "key", "revoke", key[:12]).returncode == 0
        assert client.post("/v1/traces", content=body, headers=otlp.PROTOBUF).status_code == 401
    # A server with another secret cannot verify the key: the hash is keyed.
    other = warden(tmp_path, url, "key", "create", "--project", "shop", "--scope", "ingest")
    with httpx.Client(
        base_url=live.url, headers={"Authorization": f"Bearer {other.stdout.strip()}"}
    ) as client:
        assert client.post("/v1/traces", content=body, headers=otlp.PROTOBUF).status_code == 401
