"""The `warden` command line, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests import otlp
from tests.conftest import TEST_SECRET, LiveService

WARDEN = str(Path(sys.executable).parent / "warden")


def warden(
    tmp_path: Path, database_url: str, *args: str, secret: str = "cli-secret"
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "WARDEN_DATA_DIR": str(tmp_path / "data"),
        "WARDEN_DATABASE_URL": database_url,
        "WARDEN_SECRET_KEY": secret,
        "COLUMNS": "200",
    }
    return subprocess.run(
        [WARDEN, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["migrate"],
        ["serve"],
        ["project", "create"],
        ["project", "list"],
        ["key", "create"],
        ["key", "list"],
        ["key", "revoke"],
        ["demo"],
        ["policy", "lint"],
        ["policy", "test"],
        ["drift", "run"],
        ["drift", "list"],
        ["drift", "configure"],
        ["audit", "verify"],
        ["audit", "checkpoint"],
        ["export"],
        ["verify"],
        ["erase"],
        ["retention", "apply"],
        ["hold", "place"],
    ],
)
def test_every_command_explains_itself_with_an_example(tmp_path: Path, command: list[str]) -> None:
    result = subprocess.run(
        [WARDEN, *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0
    assert "Usage: warden" in result.stdout
    if len(command) == 2 or command in (["migrate"], ["serve"], ["export"], ["verify"], ["erase"]):
        assert "Example:" in result.stdout


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


def test_database_errors_are_one_line(tmp_path: Path) -> None:
    result = warden(tmp_path, "postgresql+psycopg://nobody@127.0.0.1:1/none", "migrate")
    assert result.returncode == 1
    assert result.stderr.startswith("database error:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_policy_lint_and_test_from_the_cli(tmp_path: Path) -> None:
    from policies import BUILTIN

    lint = subprocess.run([WARDEN, "policy", "lint", str(BUILTIN)], capture_output=True, text=True)
    assert lint.returncode == 0 and "policies, set hash" in lint.stdout
    tested = subprocess.run(
        [WARDEN, "policy", "test", str(BUILTIN)], capture_output=True, text=True
    )
    assert tested.returncode == 0
    assert tested.stdout.strip().splitlines()[-1].endswith("passed, 0 failed")

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.yaml").write_text(
        'id: x\nversion: "1"\ndescription: d\nphase: nope\nwhen: "true"\neffect: deny\nmessage: m\n'
    )
    refused = subprocess.run([WARDEN, "policy", "lint", str(bad)], capture_output=True, text=True)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: {bad / 'x.yaml'}:4: unknown phase 'nope' "
        "(phases: pre_request, post_decision, deploy, drift)"
    )

    failing = tmp_path / "failing"
    failing.mkdir()
    (failing / "cap.yaml").write_text((BUILTIN / "risk-cap.yaml").read_text())
    (failing / "cap.test.yaml").write_text(
        "policy: risk-cap\ncases:\n  - name: wrong expectation\n"
        "    context: {decision: {chosen: a}, predicted: {conflict_probability: 0.9}}\n"
        "    expect: allow\n"
    )
    result = subprocess.run(
        [WARDEN, "policy", "test", str(failing)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "FAIL risk-cap / wrong expectation: expected allow, got deny" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"
