"""`warden policy lint` and `warden policy test`, run as real processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.app.cli.warden_process import WARDEN


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
