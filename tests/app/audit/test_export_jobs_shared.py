"""Export jobs shared by the processes of a deployment: queued in the database, run by the
leader of `exports`, the bundle kept by MLflow and served by any process."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from app.audit import heads, ledger
from app.audit.bundle import Scope
from app.audit.exports import INTERRUPTED, ExportJobs
from app.audit.ledger import checkpoints
from app.audit.verify import verify_bundle
from app.config import Settings
from app.registry.mlflow_results import find_results
from app.tenancy import projects
from collectors import conventions as wire
from tests import otlp
from tests.conftest import LiveService, running
from tests.servers import free_port

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND


def _wait(
    client: httpx.Client, url: str, until: Callable[[dict[str, Any]], bool], timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.get(url).raise_for_status().json()
        if until(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def _finished(status: dict[str, Any]) -> bool:
    return status["status"] in ("done", "failed")


def _replicas(settings: Settings, root: Path, tracking_uri: str) -> tuple[Settings, Settings]:
    """Two processes of one deployment: one database, one MLflow, one signing key, and each
    a data folder of its own."""
    key = root / "audit-signing.key"
    if not key.exists():
        heads.save_private_key(heads.generate_key(), key)
    shared = {"mlflow_tracking_uri": tracking_uri, "audit_signing_key": key}
    return (
        settings.model_copy(update={"data_dir": root / "replica-a", **shared}),
        settings.model_copy(update={"data_dir": root / "replica-b", **shared}),
    )


def _ingest(service: LiveService, requests: int) -> None:
    ids = otlp.Ids(5)
    spans = []
    for i in range(requests):
        spans += otlp.hybrid_trace(
            ids, start=T0 + i * SECOND, **{wire.REQUEST_SUBJECT: f"user-{i % 2}"}
        )
    with service.client(service.key("shop", "ingest")) as client:
        client.post(
            "/v1/traces", content=otlp.request(spans).SerializeToString(), headers=otlp.PROTOBUF
        ).raise_for_status()


def _exports_produced(engine: Engine) -> int:
    with engine.connect() as conn:
        found = ledger.iter_events(conn, projects.project_id(engine, "shop"))
        return sum(event.kind == ledger.EXPORT_PRODUCED for event in found)


@pytest.mark.parametrize("mlflow", ["server", "embedded"])
def test_an_export_started_through_one_replica_is_downloaded_through_another(
    mlflow: str,
    settings: Settings,
    engine: Engine,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    tracking_uri = (
        request.getfixturevalue("mlflow_server")
        if mlflow == "server"
        else f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    first, second = _replicas(settings, tmp_path, tracking_uri)
    with running(first, engine) as a, running(second, engine) as b:
        _ingest(a, 6)
        with a.client(a.key("shop", "admin")) as client:
            answer = client.post("/v1/exports", json={"from": "2023-11-14T00:00:00Z"})
        assert answer.status_code == 202, answer.text
        job = answer.json()
        auditor = b.key("shop", "audit")
        with b.client(auditor) as client:
            url = f"/v1/exports/{job['id']}"
            status = _wait(client, url, _finished)
            assert status["status"] == "done", status
            assert status["counts"]["requests"] == 6
            assert status["progress"]["done"] == status["progress"]["total"] > 0
            assert [j["id"] for j in client.get("/v1/exports").json()["items"]] == [job["id"]]
            download = client.get(status["download"])
            assert download.status_code == 200, download.text
            assert download.headers["content-type"] == "application/zip"
            assert job["id"] in download.headers["content-disposition"]
            key_pem = client.get("/v1/audit/public-key").json()["public_key_pem"]
        with a.client(a.key("shop", "audit")) as client:  # the first replica serves it too
            assert client.get(status["download"]).content == download.content
    bundle = download.content
    assert status["bundle"]["bytes"] == len(bundle)
    scheme = "mlflow-artifacts:" if mlflow == "server" else "file:"
    assert status["bundle"]["uri"].startswith(scheme), status["bundle"]
    assert status["bundle"]["uri"].endswith("/export/bundle.zip")
    assert status["mlflow_run_id"] in find_results(tracking_uri, "export")
    verdict = verify_bundle(bundle, [heads.load_public_key(key_pem)])
    assert verdict.ok, verdict.summary()
    assert verdict.records == 6 and verdict.mode == "full"
    assert _exports_produced(engine) == 1
    # No replica's disk holds a copy: the bundle is MLflow's alone.
    for folder in (first.data_dir, second.data_dir):
        assert not list(folder.rglob("*.zip")), list(folder.rglob("*.zip"))


def test_a_job_left_running_by_a_dead_leader_is_failed_by_the_next(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    first, second = _replicas(settings, tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    projects.create_project(engine, "shop")
    dead = ExportJobs(engine, first, checkpoints.signing_key(first))
    # The dead leader took the lead and the job, and ended before finishing it: its lead
    # went with it (the lock file's descriptor, the advisory lock's session).
    assert dead.leadership.hold()
    interrupted = dead.submit(Scope(project="shop"), "key:test")
    queued = dead.submit(Scope(project="shop"), "key:test")
    claimed = dead._claim_next()
    assert claimed is not None and claimed.id == interrupted.id
    dead.leadership.release()
    with running(second, engine) as b, b.client(b.key("shop", "audit")) as client:
        failed = _wait(client, f"/v1/exports/{interrupted.id}", _finished)
        done = _wait(client, f"/v1/exports/{queued.id}", _finished)  # it waited for a leader
        assert client.get(f"/v1/exports/{interrupted.id}/download").status_code == 409
    assert failed["status"] == "failed" and failed["error"] == INTERRUPTED, failed
    assert failed["download"] is None
    assert done["status"] == "done", done
    assert _exports_produced(engine) == 1


def test_an_export_fails_in_one_line_when_mlflow_cannot_store_its_bundle(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    away = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    first, _ = _replicas(settings, tmp_path, away)
    with running(first, engine) as a:
        _ingest(a, 2)
        with a.client(a.key("shop", "admin")) as client:
            job = client.post("/v1/exports", json={}).raise_for_status().json()
            status = _wait(client, f"/v1/exports/{job['id']}", _finished)
            assert client.get(f"/v1/exports/{job['id']}/download").status_code == 409
    assert status["status"] == "failed", status
    error = status["error"]
    assert "\n" not in error and away in error and "not reachable" in error, error
    assert status["bundle"] is None and status["mlflow_run_id"] is None
    assert status["ledger_seq"] is None
    assert _exports_produced(engine) == 0
    assert not list(first.data_dir.rglob("*.zip"))
