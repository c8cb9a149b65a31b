"""Inline policy gates in the SDK: enforced in-process, every evaluation stored."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import collectors
from collectors import conventions as wire
from policies import BUILTIN, PolicySet
from tests.collectors.test_sdk import SECRET, TinyWorldModel, handle
from tests.conftest import LiveService


def folder(tmp_path: Path, *names: str, edit: tuple[str, str] | None = None) -> Path:
    """A policy folder with some built-in policies, one text edit applied to them."""
    target = tmp_path / "policies"
    target.mkdir(exist_ok=True)
    for name in names:
        text = (BUILTIN / f"{name}.yaml").read_text()
        if edit:
            text = text.replace(*edit)
        (target / f"{name}.yaml").write_text(text)
    return target


def detail(live: LiveService, trace_id: str) -> dict:
    with live.client(live.key("shop", "read")) as client:
        return client.get(f"/v1/requests/{trace_id}").raise_for_status().json()


def start(live: LiveService, tmp_path: Path, policies: str | Path) -> None:
    collectors.init(
        endpoint=live.url,
        api_key=live.key("shop", "ingest", "read"),
        fingerprint_secret=SECRET,
        spool_dir=tmp_path / "spool",
        policies=policies,
    )


def test_a_decision_over_the_risk_cap_is_denied_in_process_and_stored(
    live: LiveService, tmp_path: Path
) -> None:
    policies = folder(tmp_path, "risk-cap", edit=("probability: 0.35", "probability: 0.0"))
    start(live, tmp_path, policies)
    model = TinyWorldModel()
    with pytest.raises(collectors.PolicyDenied) as denied:
        handle(model, "a risky booking")
    assert denied.value.policy_id == "risk-cap"
    assert "exceeds the cap 0" in denied.value.message
    assert collectors.flush(10)

    with live.client(live.key("shop", "read")) as client:
        (item,) = client.get("/v1/requests").json()["items"]
    stored = detail(live, item["request_id"])
    assert stored["outcome"] == "denied"
    assert stored["status"] != "error"
    (evaluation,) = stored["policy_evaluations"]
    expected = PolicySet.load_dir(policies).get("risk-cap")
    assert (evaluation["policy_id"], evaluation["policy_version"], evaluation["policy_hash"]) == (
        "risk-cap", expected.version, expected.hash,
    )  # fmt: skip
    assert (evaluation["phase"], evaluation["outcome"]) == ("post_decision", "deny")
    assert "exceeds the cap" in evaluation["message"]


def test_every_evaluation_is_stored_even_when_nothing_fires(
    live: LiveService, tmp_path: Path
) -> None:
    names = ("risk-cap", "planner-confidence-floor", "input-limits")
    start(live, tmp_path, folder(tmp_path, *names, edit=("probability: 0.35", "probability: 0.99")))
    trace_id = handle(TinyWorldModel(), "fine")
    assert collectors.flush(10)
    stored = detail(live, trace_id)
    outcomes = sorted(
        (e["phase"], e["policy_id"], e["outcome"]) for e in stored["policy_evaluations"]
    )
    assert outcomes == [
        ("post_decision", "planner-confidence-floor", "allow"),
        ("post_decision", "risk-cap", "allow"),
        ("pre_request", "input-limits", "allow"),
    ]


def test_a_pre_request_deny_stops_the_request_before_it_runs(
    live: LiveService, tmp_path: Path
) -> None:
    start(
        live, tmp_path, folder(tmp_path, "input-limits", edit=("max_bytes: 4096", "max_bytes: 10"))
    )
    ran = []
    with (
        pytest.raises(collectors.PolicyDenied, match="input-limits"),
        collectors.request({"text": "a request longer than ten bytes"}),
    ):
        ran.append(True)
    assert ran == []
    assert collectors.flush(10)
    with live.client(live.key("shop", "read")) as client:
        (item,) = client.get("/v1/requests").json()["items"]
    assert item["outcome"] == "denied"


def test_require_review_marks_the_request_and_lets_the_stack_decide(
    live: LiveService, tmp_path: Path
) -> None:
    policies = folder(
        tmp_path, "planner-confidence-floor", edit=("confidence: 0.6", "confidence: 0.99")
    )
    start(live, tmp_path, policies)
    with collectors.request({"text": "x"}) as req:
        verdict = collectors.decision([{"action": "a", "score": 1.0}], "a", confidence=0.5)
        assert verdict is not None and verdict.effect == "require_review"
    assert collectors.flush(10)
    stored = detail(live, req.trace_id or "")
    root = next(s for s in stored["spans"] if s["parent_span_id"] is None)
    assert root["attributes"][wire.REVIEW_REQUIRED] is True
    assert root["attributes"][wire.REVIEW_POLICY] == "planner-confidence-floor"


def test_the_sdk_enforces_the_service_bundle_and_refreshes_it_by_etag(
    live: LiveService, tmp_path: Path
) -> None:
    start(live, tmp_path, "service")
    client = collectors._client.active()
    assert client is not None and client.gates is not None and client.gates.ready
    served = PolicySet.load_dir(BUILTIN)
    assert client.gates.policies is not None and client.gates.policies.hash == served.hash
    etag = client.gates._etag
    assert etag == f'"{served.hash}"'
    client.gates.refresh()  # unchanged: a 304, the same set kept
    assert client.gates._etag == etag
    with live.client(live.key("shop", "read")) as http:
        assert http.get("/v1/policies/bundle", headers={"If-None-Match": etag}).status_code == 304
        metrics = http.get("/metrics").text
    assert 'route="/v1/policies/bundle",status="304"' in metrics


def test_a_broken_folder_is_refused_at_init(tmp_path: Path) -> None:
    target = tmp_path / "broken"
    target.mkdir()
    shutil.copy(BUILTIN / "risk-cap.yaml", target / "risk-cap.yaml")
    (target / "risk-cap.yaml").write_text(
        (target / "risk-cap.yaml").read_text().replace("phase: post_decision", "phase: later")
    )
    with pytest.raises(collectors.PolicyError, match="unknown phase 'later'"):
        collectors.init(fingerprint_secret="s", spool_dir=tmp_path / "spool", policies=target)


def test_a_parked_decision_waits_in_the_review_queue_for_an_admin(
    live: LiveService, tmp_path: Path
) -> None:
    policies = folder(
        tmp_path, "planner-confidence-floor", edit=("confidence: 0.6", "confidence: 0.99")
    )
    start(live, tmp_path, policies)
    with collectors.request({"text": "unsure"}) as req:
        collectors.decision([{"action": "a", "score": 1.0}], "a", confidence=0.5)
    handle(TinyWorldModel(), "sure enough?")  # also below 0.99: a second review
    assert collectors.flush(10)

    admin, reader = live.key("shop", "admin"), live.key("shop", "read")
    with live.client(reader) as client:
        pending = client.get("/v1/reviews").raise_for_status().json()["items"]
        assert len(pending) == 2
        first = next(r for r in pending if r["request_id"] == req.trace_id)
        assert first["policy_id"] == "planner-confidence-floor"
        assert client.post(f"/v1/reviews/{first['id']}/approve", json={}).status_code == 403
    with live.client(live.key("rival", "admin")) as client:
        assert client.post(f"/v1/reviews/{first['id']}/approve", json={}).status_code == 404
    with live.client(admin) as client:
        decided = client.post(f"/v1/reviews/{first['id']}/approve", json={"note": "ok"}).json()
        assert (decided["status"], decided["note"]) == ("approved", "ok")
        assert decided["decided_by"].startswith("key:wdn_")
        again = client.post(f"/v1/reviews/{first['id']}/reject", json={})
        assert again.status_code == 409 and "approved already" in again.json()["detail"]
        assert len(client.get("/v1/reviews").json()["items"]) == 1
        assert len(client.get("/v1/reviews", params={"status": "approved"}).json()["items"]) == 1
        assert client.get("/v1/reviews", params={"status": "maybe"}).status_code == 400


def test_policy_explain_shows_what_judged_a_stored_request(
    live: LiveService, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    policies = folder(
        tmp_path, "risk-cap", "input-limits", edit=("probability: 0.35", "probability: 0.0")
    )
    start(live, tmp_path, policies)
    with pytest.raises(collectors.PolicyDenied):
        handle(TinyWorldModel(), "risky")
    assert collectors.flush(10)
    with live.client(live.key("shop", "read")) as client:
        (item,) = client.get("/v1/requests").json()["items"]
    env = {
        **os.environ,
        "WARDEN_DATABASE_URL": live.settings.resolved_database_url,
        "WARDEN_POLICIES_DIR": str(policies),
        "COLUMNS": "250",
    }
    warden = str(Path(sys.executable).parent / "warden")
    shown = subprocess.run(
        [warden, "policy", "explain", item["request_id"], "--project", "shop"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "outcome denied, 2 policy evaluations" in shown.stdout
    rows = [
        line for line in shown.stdout.splitlines() if "risk-cap" in line or "input-limits" in line
    ]
    assert any("deny" in r and "exceeds the cap" in r and "yes" in r for r in rows)
    assert any("allow" in r and "input-limits" in r for r in rows)
    # Against the built-in set, the edited risk-cap is no longer the policy in force.
    env.pop("WARDEN_POLICIES_DIR")
    shown = subprocess.run(
        [warden, "policy", "explain", item["request_id"], "--project", "shop"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert any("risk-cap" in line and "changed" in line for line in shown.stdout.splitlines())
    missing = subprocess.run(
        [warden, "policy", "explain", "0" * 32, "--project", "shop"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 1 and "no request" in missing.stderr
