"""MLflow lineage: versions seen in traffic resolved to their run and data, kept when MLflow
forgets them, resolved late when registered late."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.registry import lineage
from collectors import conventions as wire
from tests import otlp
from tests.app.governance.test_deploy import GOOD, MODEL, Registry
from tests.conftest import LiveService


def send(live: LiveService, key: str, version: str, seed: int, model: str = MODEL) -> str:
    trace = otlp.hybrid_trace(
        otlp.Ids(seed), **{wire.model_name("world_model"): model,
                           wire.model_version("world_model"): version}
    )  # fmt: skip
    with live.client(key) as client:
        body = otlp.request(trace).SerializeToString()
        client.post("/v1/traces", content=body, headers=otlp.PROTOBUF).raise_for_status()
    return trace[0].trace_id.hex()


def stage(live: LiveService, key: str, request_id: str, role: str = "world_model") -> dict:
    with live.client(key) as client:
        found = client.get(f"/v1/requests/{request_id}/lineage").raise_for_status().json()
    return next(s for s in found["stages"] if s["role"] == role)


@pytest.mark.parametrize("store", ["local", "server"])
def test_a_request_is_traced_to_its_run_and_data_and_keeps_them(
    live: LiveService, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    """Against the embedded SQLite store and against a real `mlflow server` over HTTP."""
    uri = request.getfixturevalue("mlflow_server") if store == "server" else None
    registry = Registry(tmp_path, uri)
    model = registry.model
    version = registry.version(GOOD)
    registry.client.set_registered_model_alias(model, "champion", version)
    entry = registry.client.get_model_version(model, version)
    key = live.key("booking", "ingest", "read")
    request_id = send(live, key, version, 1, model)
    assert stage(live, key, request_id)["status"] == "unresolved"  # nothing on the ingest path

    assert lineage.resolve_pending(live.engine, registry.client) >= 1
    resolved = stage(live, key, request_id)
    assert resolved["status"] == "resolved"
    assert resolved["run"]["id"] == entry.run_id
    assert resolved["run"]["metrics"] == GOOD
    assert [(d["name"], d["digest"], d["context"]) for d in resolved["datasets"]] == [
        ("booking-sim", "ebf00c0e", "training")
    ]
    assert resolved["aliases"] == ["champion"]
    # Stages MLflow does not know stay unresolved, and are still listed.
    assert stage(live, key, request_id, "planner")["status"] == "unresolved"

    # MLflow cleans up: the run is deleted and the alias moves away. The stored lineage keeps
    # the run and its data, and records the alias move.
    registry.client.delete_run(entry.run_id)
    registry.client.delete_registered_model_alias(model, "champion")
    lineage.resolve_pending(live.engine, registry.client, refresh_after=0)
    kept = stage(live, key, request_id)
    assert kept["run"]["id"] == entry.run_id and kept["datasets"] == resolved["datasets"]
    assert kept["aliases"] == []
    assert [(e["alias"], e["change"]) for e in kept["alias_events"]] == [("champion", "removed")]


def test_a_version_unknown_at_ingest_is_resolved_once_registered(
    live: LiveService, tmp_path: Path
) -> None:
    registry = Registry(tmp_path)
    key = live.key("booking", "ingest", "read")
    request_id = send(live, key, "1", 2)
    lineage.resolve_pending(live.engine, registry.client)
    assert stage(live, key, request_id)["status"] == "unresolved"
    version = registry.version(GOOD)
    assert version == "1"
    lineage.resolve_pending(live.engine, registry.client)
    late = stage(live, key, request_id)
    assert late["status"] == "resolved" and late["run"]["metrics"] == GOOD


def test_lineage_of_another_projects_request_is_404(live: LiveService, tmp_path: Path) -> None:
    key = live.key("booking", "ingest", "read")
    request_id = send(live, key, "1", 3)
    with live.client(live.key("rival", "read")) as client:
        assert client.get(f"/v1/requests/{request_id}/lineage").status_code == 404


def test_warden_lineage_prints_the_chain(live: LiveService, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    registry = Registry(tmp_path)
    version = registry.version(GOOD)
    run_id = registry.client.get_model_version(MODEL, version).run_id
    key = live.key("booking", "ingest", "read")
    request_id = send(live, key, version, 4)
    lineage.resolve_pending(live.engine, registry.client)
    env = {
        **os.environ,
        "WARDEN_DATABASE_URL": live.settings.resolved_database_url,
        "WARDEN_MLFLOW_TRACKING_URI": registry.uri,
        "COLUMNS": "200",
    }
    warden = str(Path(sys.executable).parent / "warden")
    shown = subprocess.run(
        [warden, "lineage", request_id, "--project", "booking"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"world_model: {MODEL} v{version} (resolved)" in shown.stdout
    assert f"run {run_id}: val_conflict_accuracy=0.94, val_conflict_auc=0.96" in shown.stdout
    assert "dataset booking-sim digest ebf00c0e (training)" in shown.stdout
    assert "planner: mpc-planner v2 (unresolved)" in shown.stdout


def test_models_show_their_traffic_and_mlflow_gets_it_as_tags(
    live: LiveService, tmp_path: Path
) -> None:
    registry = Registry(tmp_path)
    version = registry.version(GOOD)
    key = live.key("booking", "ingest", "read")
    for seed in range(3):
        send(live, key, version, 10 + seed)
    denied = otlp.hybrid_trace(
        otlp.Ids(20), **{wire.model_name("world_model"): MODEL,
                         wire.model_version("world_model"): version,
                         wire.REQUEST_OUTCOME: "denied"}
    )  # fmt: skip
    with live.client(key) as client:
        body = otlp.request(denied).SerializeToString()
        client.post("/v1/traces", content=body, headers=otlp.PROTOBUF).raise_for_status()
    lineage.resolve_pending(live.engine, registry.client)

    with live.client(key) as client:
        items = client.get("/v1/models").raise_for_status().json()["items"]
        one = client.get(f"/v1/models/{MODEL}/versions/{version}").raise_for_status().json()
        assert client.get(f"/v1/models/{MODEL}/versions/99").status_code == 404
    assert {(i["name"], i["version"]) for i in items} >= {(MODEL, version), ("mpc-planner", "2")}
    assert one["requests"] == 4
    assert one["outcomes"] == {"booked": 3, "denied": 1}
    assert one["deny_rate"] == 0.25
    assert one["policies"] == {"risk-cap": {"allow": 4}}
    assert one["status"] == "resolved" and one["lineage"]["run"]["metrics"] == GOOD

    assert lineage.tag_traffic(live.engine, registry.client) == 3
    tags = registry.client.get_model_version(MODEL, version).tags
    assert tags["warden.booking.requests"] == "4"
    assert tags["warden.booking.deny_rate"] == "0.2500"
    assert tags["warden.booking.last_drift_verdict"] == "none"
    assert lineage.tag_traffic(live.engine, registry.client) == 0  # unchanged: nothing written


def test_one_resolver_per_deployment_and_unknown_versions_back_off(
    live: LiveService, tmp_path: Path
) -> None:
    first = lineage.Resolver(live.engine, "sqlite://", 60)
    second = lineage.Resolver(live.engine, "sqlite://", 60)
    try:
        assert first.leadership.hold()
        assert not second.leadership.hold()
        first.leadership.release()
        assert second.leadership.hold()  # released by the first
    finally:
        first.leadership.release()
        second.leadership.release()

    registry = Registry(tmp_path)
    key = live.key("booking", "ingest", "read")
    send(live, key, "5", 30)
    misses: dict[tuple[str, str], tuple[float, float]] = {}
    lineage.resolve_pending(live.engine, registry.client, misses=misses)
    assert misses[(MODEL, "5")][1] == 1.0
    lineage.resolve_pending(live.engine, registry.client, misses=misses)
    assert misses[(MODEL, "5")][1] == 1.0  # within its pause: not asked again
