"""The `warden` root command as a real process: every command explains itself, and a
database it cannot reach is one line of error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.app.cli.warden_process import WARDEN, warden


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
        ["replay"],
        ["promote"],
        ["rollback"],
        ["lineage"],
        ["policy", "lint"],
        ["policy", "test"],
        ["policy", "explain"],
        ["drift", "run"],
        ["drift", "list"],
        ["drift", "configure"],
        ["experiment", "configure"],
        ["experiment", "create"],
        ["experiment", "list"],
        ["experiment", "show"],
        ["experiment", "stop"],
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
    if command:
        assert "Example:" in result.stdout


def test_database_errors_are_one_line(tmp_path: Path) -> None:
    result = warden(tmp_path, "postgresql+psycopg://nobody@127.0.0.1:1/none", "migrate")
    assert result.returncode == 1
    assert result.stderr.startswith("database error:")
    assert len(result.stderr.strip().splitlines()) == 1
