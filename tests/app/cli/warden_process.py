"""The `warden` command run as a real process, on a database and data folder of a test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
