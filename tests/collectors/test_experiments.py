"""The SDK assigns requests to running experiments in-process: the same arm as the pure
`ExperimentConfig.assign` for the same unit, recorded on the root span and stored by the
service as the request's arm; from the service's bundle, until the experiment stops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import collectors
from collectors import conventions as wire
from collectors.experiments import ExperimentConfig, assign, sampled
from tests.collectors.test_sdk import init
from tests.conftest import LiveService

ENTRY: dict[str, Any] = {
    "name": "wm-v2",
    "stage": "world_model",
    "unit": "subject",
    "salt": "salt-1",
    "arms": [
        {"name": "control", "model": "models:/wm/1", "weight": 1.0},
        {"name": "v2", "model": "models:/wm/2", "weight": 1.0},
    ],
    "shadows": [{"name": "v3", "model": "models:/wm/3", "sample_rate": 1.0}],
}


def record(subject: str | None) -> tuple[str, collectors.Assignment | None]:
    with collectors.request({"text": "hello"}, subject=subject) as req:
        assignment = req.assignment("world_model")
        assert req.assignment("planner") is None
        req.set_outcome("booked")
    return req.trace_id or "", assignment


def test_requests_get_the_arm_the_pure_assignment_gives_and_the_service_stores_it(
    live: LiveService, tmp_path: Path
) -> None:
    init(live, tmp_path, experiments=[ENTRY])
    config = ExperimentConfig.from_bundle(ENTRY)
    seen: dict[str, str] = {}
    arms: dict[str, int] = {}
    for i in range(40):
        subject = f"user-{i % 10}"
        trace_id, assignment = record(subject)
        assert assignment == config.assign(subject, trace_id)
        assert assignment is not None and assignment.experiment == "wm-v2"
        assert assignment.shadows == (collectors.ShadowArm("wm-v2", "v3", "models:/wm/3"),)
        # Sticky: a subject keeps its arm.
        assert seen.setdefault(subject, assignment.arm) == assignment.arm
        arms[assignment.arm] = arms.get(assignment.arm, 0) + 1
    assert set(arms) == {"control", "v2"}
    # Without a subject the request itself is the unit.
    trace_id, anonymous = record(None)
    assert anonymous is not None and anonymous == config.assign(None, trace_id)
    assert collectors.flush(10)

    with live.client(live.key("shop", "admin")) as client:
        assert client.post("/v1/experiments", json={**ENTRY, "salt": None}).status_code == 201
        shown = client.get("/v1/experiments/wm-v2").json()
        detail = client.get(f"/v1/requests/{trace_id}").json()
    arms[anonymous.arm] += 1
    assert shown["counts"] == arms
    root = next(s for s in detail["spans"] if s["parent_span_id"] is None)
    assert root["attributes"][wire.experiment_name("world_model")] == "wm-v2"
    assert root["attributes"][wire.experiment_arm("world_model")] == anonymous.arm


def test_a_request_unit_experiment_splits_by_the_request_id(
    live: LiveService, tmp_path: Path
) -> None:
    entry = {**ENTRY, "unit": "request", "shadows": []}
    init(live, tmp_path, experiments=[entry])
    config = ExperimentConfig.from_bundle(entry)
    with collectors.request({"text": "x"}, subject="u-1", request_id="order-17") as req:
        assignment = req.assignment("world_model")
    assert assignment == config.assign("u-1", req.trace_id or "")
    assert assignment is not None and assignment.shadows == ()
    # The same request id (a retry) is the same trace, so the same arm.
    with collectors.request({"text": "x"}, subject="u-2", request_id="order-17") as again:
        assert again.assignment("world_model") == assignment


def test_the_service_bundle_brings_experiments_and_a_stop_ends_them(
    live: LiveService, tmp_path: Path
) -> None:
    admin = live.key("shop", "admin")
    with live.client(admin) as client:
        body = {key: value for key, value in ENTRY.items() if key != "unit"}
        assert client.post("/v1/experiments", json=body | {"salt": "s-9"}).status_code == 201
    init(live, tmp_path, api_key=live.key("shop", "ingest", "read"), policies="service")
    client_ = collectors._client.active()
    assert client_ is not None and client_.gates is not None
    (config,) = client_.experiments.configs
    assert config == ExperimentConfig.from_bundle({**ENTRY, "salt": "s-9"})
    trace_id, assignment = record("user-1")
    assert assignment == config.assign("user-1", trace_id)

    etag = client_.gates._etag
    client_.gates.refresh()  # nothing changed: a 304, the same experiments
    assert client_.gates._etag == etag and client_.experiments.configs == (config,)
    with live.client(admin) as client:
        assert client.post("/v1/experiments/wm-v2/stop").status_code == 200
    _, still = record("user-1")
    assert still is not None  # until the next refresh, the set in hand is used
    client_.gates.refresh()
    assert client_.experiments.configs == ()
    late, none = record("user-1")
    assert none is None
    assert collectors.flush(10)
    with live.client(admin) as client:
        detail = client.get(f"/v1/requests/{late}").json()
        assert sum(client.get("/v1/experiments/wm-v2").json()["counts"].values()) == 2
    root = next(s for s in detail["spans"] if s["parent_span_id"] is None)
    assert not [k for k in root["attributes"] if k.startswith(wire.EXPERIMENT_PREFIX)]


def test_experiments_given_override_the_bundles_and_a_malformed_one_is_refused(
    live: LiveService, tmp_path: Path
) -> None:
    with pytest.raises(collectors.ConfigurationError, match="experiment entry 0 is malformed"):
        init(live, tmp_path, experiments=[{"name": "x"}])
    init(live, tmp_path, experiments=[], policies="service")
    client = collectors._client.active()
    assert client is not None and client.gates is not None and client.gates.experiments is None


def test_no_client_no_assignment() -> None:
    with collectors.request({"text": "x"}, subject="u") as req:
        assert req.assignment("world_model") is None


@pytest.mark.parametrize("shadows", [0, 2, 6])
def test_the_config_assigns_as_the_pure_functions_say(shadows: int) -> None:
    """The precomputed path of `ExperimentConfig.assign` (and its fallback beyond the
    prebuilt shadows) is `assign` and `sampled` exactly."""
    arms = [("control", 0.2), ("v2", 0.3), ("v3", 0.5)]
    entry = {
        **ENTRY,
        "arms": [{"name": n, "model": f"models:/wm/{i}", "weight": w}
                 for i, (n, w) in enumerate(arms)],
        "shadows": [{"name": f"s{i}", "model": f"models:/wm/s{i}", "sample_rate": 0.3 + i / 10}
                    for i in range(shadows)],
    }  # fmt: skip
    config = ExperimentConfig.from_bundle(entry)
    for i in range(2000):
        unit = f"user-{i}"
        got = config.assign(unit, "ignored")
        assert got.arm == assign("salt-1", unit, arms)
        assert got.model == f"models:/wm/{[n for n, _ in arms].index(got.arm)}"
        assert [s.name for s in got.shadows] == [
            s["name"] for s in entry["shadows"]
            if sampled("salt-1", unit, s["name"], s["sample_rate"])
        ]  # fmt: skip
    with pytest.raises(ValueError, match="at least one arm"):
        ExperimentConfig.from_bundle({**ENTRY, "arms": []})


def test_a_subject_that_is_not_text_leaves_the_request_unassigned(tmp_path: Path) -> None:
    init(None, tmp_path, experiments=[ENTRY])
    with collectors.request({"text": "x"}, subject=17) as req:  # type: ignore[arg-type]
        assert req.assignment("world_model") is None
        assert req.trace_id is not None
