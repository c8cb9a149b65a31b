"""The shape of the tree: who may import whom, and modules small enough to read.

The import rules are import-linter contracts in pyproject.toml (`[tool.importlinter]`), checked
here on the real import graph (grimp reads every module's imports, those inside functions
included), so a change that breaks one fails the suite, naming the offending import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 800


def test_import_contracts_hold() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout


def test_no_module_of_the_service_or_the_sdk_is_over_800_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for folder in ("app", "collectors")
        for path in (ROOT / folder).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > LIMIT
    }
    assert not long, f"split these modules (over {LIMIT} lines): {long}"
