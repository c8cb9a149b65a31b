"""Experiment configurations on SQLite and PostgreSQL: validation names the field, one running
experiment per stage, stopping, the bundle's entries and digest, and the ledger's record."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from app.audit import ledger
from app.errors import BadRequest, Conflict, NotFound, Unprocessable
from app.experiments import configs
from app.experiments.read_models import ExperimentSpec
from app.tenancy import projects
from collectors.experiments import ExperimentConfig

A, A2, B = (
    {"name": "a", "model": "models:/m/1"},
    {"name": "a", "model": "models:/m/2"},
    {"name": "b", "model": "models:/m/2"},
)


def spec(**overrides: Any) -> ExperimentSpec:
    values: dict[str, Any] = {
        "name": "wm-v2",
        "stage": "world_model",
        "arms": [
            {"name": "control", "model": "models:/booking-world-model/1"},
            {"name": "v2", "model": "models:/booking-world-model@challenger", "weight": 3},
        ],
        "shadows": [{"name": "v3", "model": "models:/booking-world-model/3", "sample_rate": 0.5}],
        "primary_kpi": "plan_success_rate",
        "guardrails": ["deny_rate", "latency_p95_ms"],
    }
    return ExperimentSpec(**(values | overrides))


@pytest.fixture
def project(engine: Engine) -> int:
    return projects.create_project(engine, "shop")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Bad Name"}, "name: 'Bad Name' is not a slug"),
        ({"stage": "llm"}, "stage: 'llm' is not one of world_model, planner"),
        ({"unit": "session"}, "unit: 'session' is not one of subject, request"),
        ({"arms": [A], "shadows": []}, "arms: an experiment needs at least two"),
        ({"arms": []}, "arms: an experiment needs at least two"),
        ({"arms": [A, A2]}, "arms[1].name: 'a' names another arm"),
        (
            {"arms": [A, {"name": "b", "model": "m/2"}]},
            "arms[1].model: 'm/2' is not a model reference",
        ),
        ({"arms": [A | {"weight": 0}, B]}, "arms[0].weight: must be a number above 0"),
        ({"arms": [A, B | {"model": "models:/m"}]}, "arms[1].model: 'models:/m' is not"),
        (
            {"shadows": [{"name": "s", "model": "models:/m/3", "sample_rate": 1.5}]},
            "shadows[0].sample_rate: must be in (0, 1]",
        ),
        (
            {"shadows": [{"name": "control", "model": "models:/m/3"}]},
            "shadows[0].name: 'control' names another arm",
        ),
        ({"primary_kpi": "revenue"}, "primary_kpi: 'revenue' is not a KPI"),
        ({"guardrails": ["deny_rate", "nope"]}, "guardrails[1]: 'nope' is not a KPI"),
        ({"guardrails": ["deny_rate", "deny_rate"]}, "guardrails: a KPI is named twice"),
    ],
)
def test_an_invalid_experiment_is_refused_naming_the_field(
    engine: Engine, project: int, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(Unprocessable) as refused:
        configs.create(engine, project, spec(**overrides), "test")
    assert refused.value.message.startswith(message), refused.value.message
    assert configs.list_experiments(engine, project) == []


def test_one_arm_with_shadow_arms_is_a_shadow_experiment(engine: Engine, project: int) -> None:
    created = configs.create(engine, project, spec(arms=[A]), "key:a")
    assert [a.name for a in created.arms] == ["a"] and [s.name for s in created.shadows] == ["v3"]


def test_one_running_experiment_per_stage_and_stop(engine: Engine, project: int) -> None:
    created = configs.create(engine, project, spec(), "key:a")
    assert created.status == "running" and created.stopped_at is None
    assert len(created.salt) == 32 and created.created_by == "key:a"
    with pytest.raises(Conflict, match="'wm-v2' is running on stage world_model already"):
        configs.create(engine, project, spec(name="wm-v3"), "key:a")
    with pytest.raises(Conflict, match="'wm-v2' exists already"):
        configs.create(engine, project, spec(stage="planner"), "key:a")
    # Another stage, or another project, is free.
    planner = configs.create(
        engine, project, spec(name="planner-ab", stage="planner", salt="fixed"), "key:a"
    )
    assert planner.salt == "fixed"
    other = projects.create_project(engine, "other")
    configs.create(engine, other, spec(name="wm-v3"), "key:b")

    stopped = configs.stop(engine, project, "wm-v2", "key:a")
    assert stopped.status == "stopped" and stopped.stopped_at is not None
    with pytest.raises(Conflict, match="stopped already"):
        configs.stop(engine, project, "wm-v2", "key:a")
    with pytest.raises(NotFound, match="no experiment 'nope'"):
        configs.stop(engine, project, "nope", "key:a")
    # The stage is free again once its experiment stopped.
    configs.create(engine, project, spec(name="wm-v3"), "key:a")

    assert [e.name for e in configs.list_experiments(engine, project)] == [
        "wm-v3", "planner-ab", "wm-v2",
    ]  # fmt: skip
    assert [e.name for e in configs.list_experiments(engine, project, "stopped")] == ["wm-v2"]
    with pytest.raises(BadRequest, match="status: 'done'"):
        configs.list_experiments(engine, project, "done")

    kinds = [
        (e.kind, e.payload["name"]) for e in ledger.list_events(engine, project).items
    ]
    assert kinds == [
        ("experiment.created", "wm-v2"),
        ("experiment.created", "planner-ab"),
        ("experiment.stopped", "wm-v2"),
        ("experiment.created", "wm-v3"),
    ]


def test_the_bundle_carries_the_running_experiments_and_its_digest_follows_them(
    engine: Engine, project: int
) -> None:
    empty, empty_digest = configs.bundle(engine, project)
    assert empty == []
    configs.create(engine, project, spec(salt="s1"), "test")
    (entry,), digest = configs.bundle(engine, project)
    assert digest != empty_digest
    assert configs.bundle(engine, project) == ([entry], digest)
    assert entry == {
        "name": "wm-v2",
        "stage": "world_model",
        "unit": "subject",
        "salt": "s1",
        "arms": [
            {"name": "control", "model": "models:/booking-world-model/1", "weight": 1.0},
            {"name": "v2", "model": "models:/booking-world-model@challenger", "weight": 3.0},
        ],
        "shadows": [{"name": "v3", "model": "models:/booking-world-model/3", "sample_rate": 0.5}],
    }
    # What the SDK parses from it.
    config = ExperimentConfig.from_bundle(entry)
    assert config.assign("u-1", "r-1").arm in {"control", "v2"}
    configs.stop(engine, project, "wm-v2", "test")
    assert configs.bundle(engine, project) == ([], empty_digest)


def test_show_counts_every_arm(engine: Engine, project: int) -> None:
    configs.create(engine, project, spec(), "test")
    detail = configs.get(engine, project, "wm-v2")
    assert detail.counts == {"control": 0, "v2": 0}
    assert detail.results is None
    with pytest.raises(NotFound):
        configs.get(engine, projects.create_project(engine, "other"), "wm-v2")
