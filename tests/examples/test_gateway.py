"""The gateway: the service runs the booking stack itself, gated, recorded like the SDK, each
request served by the world model of its experiment arm."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from collectors.experiments import assign
from examples.booking.registry import TrainingSpec, register_challenger, register_world_model
from examples.booking.world_model import TrainConfig
from policies import BUILTIN, PolicySet
from tests.conftest import TEST_SECRET, LiveService

TEXT = "a room for 6 people tomorrow 3-5pm, with a projector"


@pytest.fixture
def settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Settings]:
    """A service running the booking stack; each `@pytest.mark.policy_edit(name, old, new)`
    edits one of its policies before it starts."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    register_world_model(TrainingSpec(n_samples=3000, train=TrainConfig(epochs=2)), uri)
    monkeypatch.setenv("WARDEN_MLFLOW_TRACKING_URI", uri)
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in ("approved-model-versions", "risk-cap", "planner-confidence-floor"):
        (policies / f"{name}.yaml").write_text((BUILTIN / f"{name}.yaml").read_text())
    for marker in request.node.iter_markers("policy_edit"):
        name, old, new = marker.args
        path = policies / f"{name}.yaml"
        path.write_text(path.read_text().replace(old, new))
    yield Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'warden.db'}",
        secret_key=TEST_SECRET,
        stack="examples.booking.gateway:answer",
        lineage_interval=0,
        drift_tick=0,
        policies_dir=policies,
    )


@pytest.fixture(autouse=True)
def _default_project(engine: object) -> None:
    from app.tenancy import projects

    projects.create_project(engine, "default")  # type: ignore[arg-type]


@pytest.mark.policy_edit("risk-cap", "probability: 0.35", "probability: 0.99")
@pytest.mark.policy_edit("planner-confidence-floor", "confidence: 0.6", "confidence: 0.01")
def test_an_allowed_request_is_answered_and_recorded(live: LiveService) -> None:
    key = live.key("default", "ingest", "read")
    with live.client(key) as client:
        answer = client.post("/v1/infer", json={"input": {"text": TEXT}, "subject": "u-1"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["answer"]["kind"] in {"booked", "counter_proposal"}
        detail = client.get(f"/v1/requests/{body['request_id']}").json()
    assert detail["subject"] == "u-1"
    assert detail["outcome"] == body["answer"]["kind"]
    assert len(detail["states"]) == 9 and len(detail["decisions"]) == 1
    assert {e["policy_id"] for e in detail["policy_evaluations"]} == {
        "approved-model-versions", "risk-cap", "planner-confidence-floor",
    }  # fmt: skip
    assert all(e["outcome"] == "allow" for e in detail["policy_evaluations"])


@pytest.mark.policy_edit("risk-cap", "probability: 0.35", "probability: 0.0")
def test_a_plan_over_the_risk_cap_is_answered_403_and_stored(
    settings: Settings, live: LiveService
) -> None:
    key = live.key("default", "ingest", "read")
    with live.client(key) as client:
        answer = client.post("/v1/infer", json={"input": {"text": TEXT}})
        assert answer.status_code == 403
        body = answer.json()
        assert body["policy_id"] == "risk-cap" and "exceeds the cap 0" in body["message"]
        detail = client.get(f"/v1/requests/{body['request_id']}").json()
    assert settings.policies_dir is not None
    expected = PolicySet.load_dir(settings.policies_dir).get("risk-cap")
    assert detail["outcome"] == "denied"
    denials = [e for e in detail["policy_evaluations"] if e["outcome"] == "deny"]
    assert [(e["policy_id"], e["policy_version"], e["policy_hash"]) for e in denials] == [
        ("risk-cap", expected.version, expected.hash)
    ]


@pytest.mark.policy_edit("risk-cap", "probability: 0.35", "probability: 0.99")
@pytest.mark.policy_edit("planner-confidence-floor", "confidence: 0.6", "confidence: 0.9999")
def test_a_plan_parked_for_review_is_answered_202(live: LiveService) -> None:
    key = live.key("default", "ingest", "read")
    with live.client(key) as client:
        answer = client.post("/v1/infer", json={"input": {"text": TEXT}})
        assert answer.status_code == 202, answer.text
        body = answer.json()
        (review,) = client.get("/v1/reviews").json()["items"]
    assert review["id"] == body["review_id"]
    assert review["request_id"] == body["request_id"]
    assert review["policy_id"] == "planner-confidence-floor"


def test_a_key_of_another_project_or_without_ingest_is_refused(live: LiveService) -> None:
    with live.client(live.key("other", "ingest")) as client:
        assert client.post("/v1/infer", json={"input": {"text": TEXT}}).status_code == 404
    with live.client(live.key("default", "read")) as client:
        assert client.post("/v1/infer", json={"input": {"text": TEXT}}).status_code == 403
    with live.client(live.key("default", "ingest")) as client:
        answer = client.post("/v1/infer", json={"text": TEXT})
        assert answer.status_code == 400 and "input" in answer.json()["detail"]


@pytest.mark.policy_edit("risk-cap", "probability: 0.35", "probability: 0.99")
@pytest.mark.policy_edit("planner-confidence-floor", "confidence: 0.6", "confidence: 0.01")
def test_each_request_is_served_by_the_world_model_of_its_arm(live: LiveService) -> None:
    uri = os.environ["WARDEN_MLFLOW_TRACKING_URI"]
    challenger = register_challenger(
        uri, TrainingSpec(n_samples=3000, data_seed=1, train=TrainConfig(epochs=1))
    )
    arms = [("champion", "models:/booking-world-model/1"), ("challenger", challenger.model_uri)]
    versions = {"champion": "1", "challenger": challenger.version}
    key = live.key("default", "admin")
    with live.client(key) as client:
        created = client.post("/v1/experiments", json={
            "name": "wm-gateway", "stage": "world_model", "unit": "subject", "salt": "gw",
            "arms": [{"name": name, "model": model} for name, model in arms],
        })  # fmt: skip
        assert created.status_code == 201, created.text
        served: dict[str, set[str]] = {}
        for n in range(16):
            subject = f"u-{n}"
            answer = client.post("/v1/infer", json={"input": {"text": TEXT}, "subject": subject})
            assert answer.status_code == 200, answer.text
            detail = client.get(f"/v1/requests/{answer.json()['request_id']}").json()
            arm = assign("gw", subject, [(name, 1.0) for name, _ in arms])
            served.setdefault(arm, set()).add(detail["models"]["world_model"]["version"])
        counts = client.get("/v1/experiments/wm-gateway").json()["counts"]
    # Both arms served, each by its own version only; the service counted what it assigned.
    assert served == {arm: {version} for arm, version in versions.items()}
    assert sum(counts.values()) == 16 and all(counts.values())
