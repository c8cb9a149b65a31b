"""The `warden` command run in this process through typer's runner, its exit code checked."""

from __future__ import annotations

from typer.testing import CliRunner

from app.cli import app


def run(cli: CliRunner, *args: str, code: int = 0) -> str:
    """What `warden ARGS` printed (stdout and stderr), after checking it exited with `code`."""
    result = cli.invoke(app, list(args))
    output = result.stdout + result.stderr
    assert result.exit_code == code, f"warden {' '.join(args)} -> {result.exit_code}:\n{output}"
    return output
