"""The gateway assigns its requests to the project's running experiments exactly as the SDK
does, from the service's own store: a new experiment applies to the next request, a stopped
one to none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

import collectors
from app.config import Settings
from collectors.experiments import ExperimentConfig
from tests.conftest import TEST_SECRET, LiveService, shared_keys

EXPERIMENT: dict[str, Any] = {
    "name": "planner-ab",
    "stage": "planner",
    "unit": "subject",
    "salt": "gateway-salt",
    "arms": [
        {"name": "control", "model": "models:/booking-planner/1"},
        {"name": "greedy", "model": "models:/booking-planner/2", "weight": 2},
    ],
    "primary_kpi": "plan_success_rate",
}


def answer(payload: Any) -> dict[str, Any]:
    """The stack the service runs here: it answers with the arm its request was given."""
    with collectors.request(payload) as req:  # joins the gateway's request
        assignment = req.assignment("planner")
    return {"kind": "booked", "arm": assignment.arm if assignment else None}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    (tmp_path / "policies").mkdir()
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET,
        stack=f"{__name__}:answer",
        lineage_interval=0,
        drift_tick=0,
        audit_checkpoint_interval=0,
        policies_dir=tmp_path / "policies",
        **shared_keys(database_url, tmp_path),
    )


@pytest.fixture(autouse=True)
def _default_project(engine: Engine) -> None:
    from app.tenancy import projects

    projects.create_project(engine, "default")


def test_gateway_requests_are_assigned_like_sdk_requests(live: LiveService) -> None:
    config = ExperimentConfig.from_bundle(EXPERIMENT)
    with live.client(live.key("default", "admin")) as client:
        before = client.post("/v1/infer", json={"input": {"text": "x"}, "subject": "u-0"})
        assert before.status_code == 200, before.text
        assert before.json()["answer"]["arm"] is None

        assert client.post("/v1/experiments", json=EXPERIMENT).status_code == 201
        arms: dict[str, int] = {}
        for i in range(12):
            subject = f"u-{i % 6}"
            answered = client.post("/v1/infer", json={"input": {"text": "x"}, "subject": subject})
            assert answered.status_code == 200, answered.text
            body = answered.json()
            assert body["answer"]["arm"] == config.assign(subject, body["request_id"]).arm
            arms[body["answer"]["arm"]] = arms.get(body["answer"]["arm"], 0) + 1
        shown = client.get("/v1/experiments/planner-ab").json()
        assert shown["counts"] == {"control": 0, "greedy": 0} | arms

        assert client.post("/v1/experiments/planner-ab/stop").status_code == 200
        after = client.post("/v1/infer", json={"input": {"text": "x"}, "subject": "u-1"})
        assert after.json()["answer"]["arm"] is None
