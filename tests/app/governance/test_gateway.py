"""The gateway runs the booking stack with the service's own settings and answers each gate
as documented (app/governance/gateway.py): 403 naming the policy on a deny before the stack ran
or after its intent was parsed, 202 on a review, the versions of every stage on every request,
the MLflow store of the service's data folder, and nothing stored for an input never run."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from app.config import Settings
from examples.booking.registry import TrainingSpec, register_world_model
from examples.booking.world_model import TrainConfig
from policies import BUILTIN
from tests.conftest import TEST_SECRET, LiveService, running, shared_keys

TEXT = "a room for 6 people tomorrow 3-5pm, with a projector"
STACK = "examples.booking.gateway:answer"


@dataclass(frozen=True)
class Registry:
    data_dir: Path  # holds mlflow.db with a champion world model

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.data_dir / 'mlflow.db'}"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    data_dir = tmp_path_factory.mktemp("warden-data")
    registry = Registry(data_dir)
    register_world_model(TrainingSpec(n_samples=3000, train=TrainConfig(epochs=2)), registry.uri)
    return registry


def _policies(folder: Path, *edits: tuple[str, str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name in ("input-limits", "risk-cap", "planner-confidence-floor"):
        (folder / f"{name}.yaml").write_text((BUILTIN / f"{name}.yaml").read_text())
    # Lenient by default, so the plan itself is allowed unless a test tightens it.
    edits = (
        ("risk-cap", "probability: 0.35", "probability: 0.99"),
        ("planner-confidence-floor", "confidence: 0.6", "confidence: 0.01"),
        *edits,
    )
    for name, old, new in edits:
        path = folder / f"{name}.yaml"
        path.write_text(path.read_text().replace(old, new))
    return folder


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """A data folder of its own; MLflow where WARDEN_MLFLOW_TRACKING_URI says."""
    monkeypatch.delenv("WARDEN_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./.warden/mlflow.db to fall back on
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET,
        stack=STACK,
        mlflow_tracking_uri=registry.uri,
        lineage_interval=0,
        drift_tick=0,
        audit_checkpoint_interval=0,
        policies_dir=_policies(tmp_path / "policies"),
        **shared_keys(database_url, tmp_path),
    )


@pytest.fixture(autouse=True)
def _default_project(engine: Engine) -> None:
    from app.tenancy import projects

    projects.create_project(engine, "default")


def _stored(client: httpx.Client, request_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/requests/{request_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _count(client: httpx.Client) -> int:
    return len(client.get("/v1/requests", params={"limit": 100}).json()["items"])


def test_an_oversized_input_is_denied_403_naming_the_policy_and_stored_denied(
    live: LiveService,
) -> None:
    with live.client(live.key("default", "ingest", "read")) as client:
        answer = client.post("/v1/infer", json={"input": {"text": "x" * 5000}})
        assert answer.status_code == 403, answer.text
        body = answer.json()
        assert body["policy_id"] == "input-limits" and "max 4096" in body["message"]
        detail = _stored(client, body["request_id"])
    assert detail["outcome"] == "denied"
    assert [(e["policy_id"], e["outcome"]) for e in detail["policy_evaluations"]] == [
        ("input-limits", "deny")
    ]
    assert detail["states"] == [] and detail["decisions"] == []  # the stack never ran


def test_too_many_people_are_denied_after_the_intent_is_parsed(live: LiveService) -> None:
    with live.client(live.key("default", "ingest", "read")) as client:
        answer = client.post(
            "/v1/infer", json={"input": {"text": "a room for 60 people tomorrow 3-5pm"}}
        )
        assert answer.status_code == 403, answer.text
        body = answer.json()
        assert body["policy_id"] == "input-limits" and '"people": 60' in body["message"]
        detail = _stored(client, body["request_id"])
    assert detail["outcome"] == "denied"
    outcomes = [(e["policy_id"], e["outcome"]) for e in detail["policy_evaluations"]]
    # Judged again once its intent was known (that verdict replaces the one on its size
    # alone), denied before the world model ran.
    assert outcomes == [("input-limits", "deny")]
    assert detail["states"] == [] and detail["decisions"] == []


def test_every_request_names_the_version_of_every_stage(live: LiveService) -> None:
    with live.client(live.key("default", "ingest", "read")) as client:
        for _ in range(3):
            answer = client.post("/v1/infer", json={"input": {"text": TEXT}})
            assert answer.status_code == 200, answer.text
            models = _stored(client, answer.json()["request_id"])["models"]
            assert set(models) == {"llm", "world_model", "planner"}
            assert models["world_model"]["version"] == "1"


def test_a_review_is_answered_202(settings: Settings, tmp_path: Path, engine: Engine) -> None:
    strict = ("planner-confidence-floor", "confidence: 0.01", "confidence: 0.9999")
    settings = settings.model_copy(update={"policies_dir": _policies(tmp_path / "strict", strict)})
    with (
        running(settings, engine) as live,
        live.client(live.key("default", "ingest", "read")) as client,
    ):
        answer = client.post("/v1/infer", json={"input": {"text": TEXT}})
        assert answer.status_code == 202, answer.text
        (review,) = client.get("/v1/reviews").json()["items"]
    assert review["id"] == answer.json()["review_id"]
    assert review["policy_id"] == "planner-confidence-floor"


def test_the_data_folder_s_mlflow_store_is_used(
    settings: Settings, registry: Registry, tmp_path: Path, engine: Engine
) -> None:
    data_dir = tmp_path / "elsewhere"
    shutil.copytree(registry.data_dir, data_dir)
    settings = settings.model_copy(update={"data_dir": data_dir, "mlflow_tracking_uri": ""})
    assert settings.resolved_mlflow_tracking_uri == f"sqlite:///{data_dir / 'mlflow.db'}"
    with (
        running(settings, engine) as live,
        live.client(live.key("default", "ingest", "read")) as client,
    ):
        answer = client.post("/v1/infer", json={"input": {"text": TEXT}})
        assert answer.status_code == 200, answer.text


def test_a_stack_that_cannot_start_says_why_and_stores_nothing(
    settings: Settings, tmp_path: Path, engine: Engine
) -> None:
    empty = f"sqlite:///{tmp_path / 'empty-mlflow.db'}"
    settings = settings.model_copy(update={"mlflow_tracking_uri": empty})
    with (
        running(settings, engine) as live,
        live.client(live.key("default", "ingest", "read")) as client,
    ):
        for _ in range(2):
            answer = client.post("/v1/infer", json={"input": {"text": TEXT}})
            assert answer.status_code == 503, answer.text
            assert "could not start" in answer.json()["detail"]
            assert "booking-world-model" in answer.json()["detail"]
        assert _count(client) == 0


def test_a_malformed_body_stores_nothing(live: LiveService) -> None:
    with live.client(live.key("default", "ingest", "read")) as client:
        assert client.post("/v1/infer", json={"text": TEXT}).status_code == 400
        assert _count(client) == 0
