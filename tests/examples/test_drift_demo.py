"""Drift on the reference stack's traffic, end to end: `warden demo` traffic into a live
service, then `warden demo --shift` traffic; the drift job must flag the shifted traffic and
not the unshifted, for inputs, latent states and decisions alike. Seeds are fixed.

One scenario for the module (it sends 700 requests through the whole stack): the reference
window (the version's first 300 requests), 200 unshifted requests judged, then 200 shifted.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from app.drift import settings as drift_settings
from app.registry import lineage
from app.store import schema
from app.store.engine import create_db_engine
from app.tenancy import projects
from examples.booking import demo
from examples.booking.registry import TrainingSpec
from examples.booking.world_model import TrainConfig
from tests.conftest import LiveService, embedded_settings, free_port, running

REFERENCE, CURRENT = 300, 200
SPEC = TrainingSpec(n_samples=3000, train=TrainConfig(epochs=2))


class Webhook:
    """A real HTTP receiver on 127.0.0.1 that fails its first answer (so retries show)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.attempts += 1
                if hook.attempts == 1:
                    self.send_response(503)
                else:
                    hook.received.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@dataclass
class Scenario:
    live: LiveService
    tracking_uri: str
    unshifted: dict[str, Any]
    shifted: dict[str, Any]
    webhook: Webhook


def judge(live: LiveService, key: str) -> dict[str, Any]:
    with live.client(key) as client:
        found = client.post("/v1/drift/run", json={}, timeout=300).raise_for_status().json()
    (version,) = found["versions"]
    return dict(version)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp("drift")
    settings = embedded_settings(root)
    tracking_uri = settings.mlflow_tracking_uri
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    webhook = Webhook()
    with contextlib.ExitStack() as stack, running(settings, engine) as live:
        stack.callback(engine.dispose)
        stack.callback(webhook.server.shutdown)
        ingest = live.key("default", "ingest")
        admin = live.key("default", "admin", "read")
        changes = {"reference_count": REFERENCE, "current_count": CURRENT,
                   "webhook_url": webhook.url}  # fmt: skip
        drift_settings.update_settings(engine, projects.project_id(engine, "default"), changes)

        def send(requests: int, seed: int, shift: bool) -> None:
            result = demo.run(
                live.url, ingest, tracking_uri, fingerprint_secret="drift-test",
                spool_dir=root / f"spool-{seed}", requests=requests, seed=seed, shift=shift,
                spec=SPEC, log=lambda _line: None,
            )  # fmt: skip
            assert result.delivered and result.stats["dropped"] == 0

        send(REFERENCE, seed=1, shift=False)
        send(CURRENT, seed=2, shift=False)
        # The input reference is the training dataset of the version's lineage.
        lineage.resolve_pending(engine, lineage.mlflow_client(tracking_uri))
        unshifted = judge(live, admin)
        send(CURRENT, seed=3, shift=True)
        shifted = judge(live, admin)
        yield Scenario(live, tracking_uri, unshifted, shifted, webhook)


def report(version: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [r for r in version["reports"] if r["kind"] == kind]
    assert found, f"no {kind} report: skipped {version['skipped']}"
    return dict(found[0])


def test_input_drift_flags_shifted_traffic_against_the_training_data(scenario: Scenario) -> None:
    calm, moved = report(scenario.unshifted, "input"), report(scenario.shifted, "input")
    assert calm["reference"]["source"] == "training dataset"
    assert calm["reference"]["rows"] == SPEC.n_samples
    assert calm["verdict"] == "none", calm["scores"]
    assert moved["verdict"] == "drift", moved["scores"]
    drifted = {c["column"] for c in moved["scores"]["columns"] if c["drifted"]}
    # The shift moves group size and start hour most (examples/booking/sim.py).
    assert {"intent_people", "intent_start"} <= drifted
    assert moved["current"]["requests"] == CURRENT


def test_latent_drift_flags_shifted_traffic_per_layer(scenario: Scenario) -> None:
    calm, moved = report(scenario.unshifted, "latent"), report(scenario.shifted, "latent")
    assert calm["reference"]["source"] == "traffic" and calm["reference"]["rows"] == REFERENCE
    assert set(calm["scores"]["layers"]) == {"encoder", "transition"}
    assert calm["verdict"] == "none", calm["scores"]
    assert moved["verdict"] == "drift", moved["scores"]
    assert all(layer["p_value"] <= 0.01 for layer in moved["scores"]["layers"].values())


def test_decision_drift_flags_shifted_traffic(scenario: Scenario) -> None:
    calm, moved = report(scenario.unshifted, "decision"), report(scenario.shifted, "decision")
    assert calm["verdict"] == "none", calm["scores"]
    assert moved["verdict"] == "drift", moved["scores"]


def test_reports_are_stored_listed_and_logged_to_mlflow(scenario: Scenario) -> None:
    live = scenario.live
    key = live.key("default", "read")
    with live.client(key) as client:
        page = client.get("/v1/drift", params={"verdict": "drift"}).raise_for_status().json()
        every = client.get("/v1/drift", params={"limit": 2}).raise_for_status().json()
        assert client.get("/v1/drift", params={"kind": "weather"}).status_code == 400
        assert client.post("/v1/drift/run", json={}).status_code == 403  # read only
    kinds = {item["kind"] for item in page["items"]}
    assert kinds == {"input", "latent", "decision"}
    assert {item["job_id"] for item in page["items"]} == {scenario.shifted["job_id"]}
    assert len(every["items"]) == 2 and every["next_cursor"]

    run = MlflowClient(tracking_uri=scenario.tracking_uri).get_run(
        scenario.shifted["mlflow_run_id"]
    )
    assert run.data.tags["warden.result"] == "drift"
    assert run.data.tags["warden.model.name"] == "booking-world-model"
    assert run.data.tags["warden.model.version"] == scenario.shifted["model_version"]
    assert run.data.tags["warden.verdict"] == "drift"
    artifacts = {a.path for a in MlflowClient(scenario.tracking_uri).list_artifacts(
        run.info.run_id, "drift")}  # fmt: skip
    assert artifacts == {"drift/inputs.html", "drift/report.json"}


def test_drift_policies_judge_and_the_webhook_is_alerted(scenario: Scenario) -> None:
    # The built-in drift-alert policy warns on any drift; the receiver failed the first POST
    # and got it on a retry.
    fired = [
        v for verdicts in scenario.shifted["policies"].values() for v in verdicts if v["fired"]
    ]
    assert any(v["policy_id"] == "drift-alert" and v["effect"] == "warn" for v in fired)
    assert scenario.shifted["alerted"] is True
    assert scenario.unshifted["alerted"] is None  # nothing to say
    (alert,) = scenario.webhook.received
    assert alert["event"] == "warden.drift" and alert["verdict"] == "drift"
    assert alert["job_id"] == scenario.shifted["job_id"]
    assert scenario.webhook.attempts == 2


def test_each_judged_version_is_recorded_in_the_audit_ledger(scenario: Scenario) -> None:
    from sqlalchemy import select

    from app.store.tables import AuditEvent

    with scenario.live.engine.connect() as conn:
        payloads = conn.execute(
            select(AuditEvent.payload)
            .where(AuditEvent.kind == "drift.verdict")
            .order_by(AuditEvent.seq)
        ).scalars().all()  # fmt: skip
    assert [p["job_id"] for p in payloads] == [
        scenario.unshifted["job_id"], scenario.shifted["job_id"]
    ]  # fmt: skip
    assert [p["verdict"] for p in payloads] == ["none", "drift"]
