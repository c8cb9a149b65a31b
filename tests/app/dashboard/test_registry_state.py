"""The models and policies pages, and `/v1/models`, agree with the record: aliases as MLflow
holds them right after a move by any process (the API, the `warden` CLI, the drift job's
rollback), registered versions listed though they served nothing, Promote offered only for
versions MLflow has, and the drift policies' evaluations counted.

Each test runs its own service (uvicorn on 127.0.0.1) over a database of its own (SQLite, or
PostgreSQL where marked) and MLflow's SQLite store, with the lineage resolver off: what the
pages show after a move comes from the move itself, never from a later resolver round.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.governance import deploy
from app.registry import lineage
from app.store import schema
from app.store.engine import create_db_engine
from app.tenancy import projects
from collectors import conventions as wire
from policies import BUILTIN, PolicySet
from tests import otlp
from tests.app.dashboard.browsing import UiClient
from tests.app.governance.test_deploy import GOOD, MODEL, Registry
from tests.conftest import TEST_SECRET, LiveService, embedded_settings, running, shared_keys

PROJECT = "shop"
WARDEN = str(Path(sys.executable).parent / "warden")


@dataclass
class Stack:
    live: LiveService
    registry: Registry
    admin: str
    read: str
    root: Path
    served_by: dict[str, str]  # a request served by each world-model version, by version

    def lineage_aliases(self, version: str) -> list[str]:
        """The aliases a request's lineage names for its world model: the model index's copy,
        which the lineage, overview and drift pages read."""
        with self.live.client(self.read) as client:
            url = f"/v1/requests/{self.served_by[version]}/lineage"
            stages = client.get(url).raise_for_status().json()["stages"]
        (stage,) = [s for s in stages if s["role"] == "world_model"]
        return list(stage["aliases"])

    def warden(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The `warden` command as another process, on this service's stores."""
        settings = self.live.settings
        env = {
            **os.environ,
            "WARDEN_DATA_DIR": str(settings.data_dir),
            "WARDEN_DATABASE_URL": settings.database_url,
            "WARDEN_MLFLOW_TRACKING_URI": self.registry.uri,
            "WARDEN_SECRET_KEY": TEST_SECRET,
            "COLUMNS": "200",
            **{
                f"WARDEN_{k.upper()}": str(v)
                for k, v in shared_keys(settings.database_url, self.root).items()
            },
        }
        return subprocess.run(
            [WARDEN, *args], env=env, cwd=self.root, capture_output=True, text=True, timeout=180
        )

    def aliases(self) -> dict[tuple[str, str], list[str]]:
        """What `GET /v1/models` says each version's aliases are."""
        with self.live.client(self.read) as client:
            items = client.get("/v1/models").raise_for_status().json()["items"]
        return {(i["name"], i["version"]): i["aliases"] for i in items}

    def models_page(self) -> str:
        ui = UiClient(self.live.url, self.read)
        try:
            answer = ui.get("/ui/models")
            assert answer.status_code == 200, answer.text
            return str(answer.text)
        finally:
            ui.close()


def row(html: str, row_id: str) -> str | None:
    """The HTML of the table row `row_id`, or None if the page has none."""
    found = re.search(rf'<tr id="{re.escape(row_id)}">(.*?)</tr>', html, re.DOTALL)
    return found.group(1) if found else None


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """World model v1 and v2 registered and seen in traffic (v1 the champion, resolved by
    the lineage resolver once); v3 registered, never served. The LLM and planner versions of
    the traffic are not in MLflow. On SQLite, and on PostgreSQL (marked `postgres`)."""
    settings = embedded_settings(
        tmp_path, database_url=database_url, **shared_keys(database_url, tmp_path)
    )
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    registry = Registry(tmp_path)
    assert settings.mlflow_tracking_uri == registry.uri
    versions = [registry.version(GOOD), registry.version(GOOD), registry.version(GOOD)]
    assert versions == ["1", "2", "3"]
    try:
        with running(settings, engine) as live:
            stack = Stack(live, registry, live.key(PROJECT, "admin"), live.key(PROJECT, "read"),
                          tmp_path, {})  # fmt: skip
            ingest = live.key(PROJECT, "ingest")
            ids = otlp.Ids(5)
            spans = []
            for i, version in enumerate(["1", "1", "2"]):
                trace = otlp.hybrid_trace(
                    ids, start=(1_700_000_000 + i) * 1_000_000_000,
                    **{wire.model_version("world_model"): version},
                )  # fmt: skip
                stack.served_by[version] = trace[0].trace_id.hex()
                spans += trace
            with live.client(ingest) as client:
                client.post(
                    "/v1/traces", content=otlp.request(spans).SerializeToString(),
                    headers=otlp.PROTOBUF,
                ).raise_for_status()  # fmt: skip
            with live.client(stack.admin) as client:
                client.post(
                    f"/v1/models/{MODEL}/promote", json={"version": "1"}
                ).raise_for_status()
            lineage.resolve_pending(engine, lineage.mlflow_client(registry.uri))
            assert stack.aliases()[(MODEL, "1")] == ["champion"]
            yield stack
    finally:
        engine.dispose()


def test_an_alias_moved_by_the_cli_then_by_a_drift_rollback_shows_at_once(
    stack: Stack,
) -> None:
    moved = stack.warden("promote", MODEL, "2", "--project", PROJECT)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert stack.registry.champion() == "2"
    # Another process moved it: the API and the page read the move, not a copy minutes old.
    aliases = stack.aliases()
    assert (aliases[(MODEL, "1")], aliases[(MODEL, "2")]) == ([], ["champion"])
    html = stack.models_page()
    assert "@champion" in (row(html, f"{MODEL}-2") or "")
    assert "@champion" not in (row(html, f"{MODEL}-1") or "")
    assert (stack.lineage_aliases("1"), stack.lineage_aliases("2")) == ([], ["champion"])

    # The drift job's rollback, as the job makes it.
    engine = stack.live.engine
    pid = projects.project_id(engine, PROJECT)
    drifted = {"kind": "latent", "verdict": "drift", "share_drifted": 0.6}
    _, moves = deploy.judge_drift(
        engine, stack.registry.client, PolicySet.load_dir(BUILTIN), pid, PROJECT, drifted,
        MODEL, "2",
    )  # fmt: skip
    assert [(m.from_version, m.to_version) for m in moves] == [("2", "1")]
    aliases = stack.aliases()
    assert (aliases[(MODEL, "1")], aliases[(MODEL, "2")]) == (["champion"], [])
    html = stack.models_page()
    assert "@champion" in (row(html, f"{MODEL}-1") or "")
    assert "@champion" not in (row(html, f"{MODEL}-2") or "")
    assert (stack.lineage_aliases("1"), stack.lineage_aliases("2")) == (["champion"], [])


def test_an_alias_moved_in_mlflow_itself_shows_on_the_models_page(stack: Stack) -> None:
    stack.registry.client.set_registered_model_alias(MODEL, "champion", "3")
    html = stack.models_page()
    assert "@champion" in (row(html, f"{MODEL}-3") or "")
    assert "@champion" not in (row(html, f"{MODEL}-1") or "")


def test_a_registered_version_without_traffic_is_listed_with_zero_requests(
    stack: Stack,
) -> None:
    html = stack.models_page()
    unserved = row(html, f"{MODEL}-3")
    assert unserved is not None, "v3 is registered in MLflow but not listed"
    assert re.search(r'<td class="num">0</td>', unserved)
    assert "no traffic yet" in unserved
    assert "Promote v3" in unserved  # registered: it can be promoted
    with stack.live.client(stack.read) as client:
        items = client.get("/v1/models").raise_for_status().json()["items"]
    (listed,) = [i for i in items if (i["name"], i["version"]) == (MODEL, "3")]
    assert listed["requests"] == 0 and listed["status"] == "registered"
    assert listed["first_seen"] is None and listed["role"] == "world_model"
    # Versions MLflow never registered are still listed from traffic, as before.
    names = {(i["name"], i["version"]) for i in items}
    assert {("mpc-planner", "2"), ("intent-parser", "1")} <= names


def test_promote_is_offered_only_for_versions_mlflow_has(stack: Stack) -> None:
    html = stack.models_page()
    for version in ("1", "2"):
        assert f"Promote v{version}" in (row(html, f"{MODEL}-{version}") or "")
    # The traffic names an LLM and a planner version MLflow has never registered.
    for stage in ("intent-parser-1", "mpc-planner-2"):
        listed = row(html, stage)
        assert listed is not None, f"{stage} is seen in traffic"
        assert "Promote" not in listed
        assert "not registered in MLflow" in listed


def test_the_drift_policies_evaluations_are_counted(stack: Stack) -> None:
    engine = stack.live.engine
    pid = projects.project_id(engine, PROJECT)
    gates = PolicySet.load_dir(BUILTIN)
    for verdict, share in (("none", 0.0), ("drift", 0.6)):
        deploy.judge_drift(
            engine, stack.registry.client, gates, pid, PROJECT,
            {"kind": "latent", "verdict": verdict, "share_drifted": share}, MODEL, "1",
        )  # fmt: skip
    ui = UiClient(stack.live.url, stack.read)
    try:
        html = ui.get("/ui/policies", params={"range": "1h"}).text
    finally:
        ui.close()
    # Judged twice each: calm, then drifted.
    alert, rollback = row(html, "policy-drift-alert"), row(html, "policy-drift-rollback")
    assert alert is not None and rollback is not None
    assert 'data-value="2"' in alert and "warn 1" in alert and "allow 1" in alert
    assert 'data-value="2"' in rollback and "rollback 1" in rollback
    # The deploy gates' evaluations of the fixture's promotion stay counted too.
    metrics = row(html, "policy-promotion-metrics") or ""
    assert 'data-value="1"' in metrics
