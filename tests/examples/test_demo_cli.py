"""`warden demo`, the README's first command, as a real process on the embedded defaults."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

WARDEN = str(Path(sys.executable).parent / "warden")


def test_warden_demo_trains_serves_and_sends(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "MLFLOW_"))}
    env["COLUMNS"] = "200"
    args = [WARDEN, "demo", "--requests", "25", "--port", str(free_port())]
    first = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Created project default" in first.stdout
    assert "trained in" in first.stdout
    assert "25 requests" in first.stdout and "all delivered" in first.stdout
    data = tmp_path / ".warden"
    for name in ("warden.db", "mlflow.db", "demo.key", "fingerprint.key", "secret.key"):
        assert (data / name).exists(), name
    assert (data / "demo.key").stat().st_mode & 0o077 == 0

    # Second run: the registered model is reused, the same demo key serves again.
    second = subprocess.run([*args[:3], "5", *args[4:]], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    assert "(reused)" in second.stdout
    assert "Created project" not in second.stdout
    with sqlite3.connect(data / "warden.db") as db:
        assert db.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 30


def test_an_endpoint_needs_a_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [WARDEN, "demo", "--endpoint", "http://127.0.0.1:9"], cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --endpoint needs --api-key (a key with the ingest scope)"
    )
