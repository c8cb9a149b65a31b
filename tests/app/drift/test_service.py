"""Drift as a service: settings, schedule, HTTP errors, the CLI and alert delivery."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from app.drift import settings as drift_settings
from app.drift.alerts import post_alert
from app.drift.schedule import due_projects
from app.errors import BadRequest
from app.tenancy import projects
from tests.app.cli.warden_process import warden
from tests.conftest import LiveService, free_port


def test_settings_are_validated_and_merged(engine: Engine) -> None:
    project_id = projects.create_project(engine, "booking")
    assert drift_settings.load(engine, project_id).current_count == 500  # the default
    merged = drift_settings.update_settings(engine, project_id, {"current_count": 1000})
    again = drift_settings.update_settings(engine, project_id, {"window": "time"})
    assert merged.current_count == again.current_count == 1000 and again.window == "time"
    for bad, message in (
        ({"window": "weekly"}, "window"),
        ({"current_count": 3}, "current_count"),
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"reference_since": "2026-01-01T00:00:00Z"}, "go together"),
    ):
        with pytest.raises(BadRequest, match=message):
            drift_settings.update_settings(engine, project_id, bad)
    assert drift_settings.load(engine, project_id) == again  # a refused change stored nothing


def test_a_project_is_due_after_its_interval(engine: Engine) -> None:
    often = projects.create_project(engine, "often")
    never = projects.create_project(engine, "never")
    drift_settings.update_settings(engine, often, {"interval_seconds": 600})
    drift_settings.update_settings(engine, never, {"interval_seconds": 0})
    projects.create_project(engine, "default-interval")  # an hour, by default
    attempts: dict[str, float] = {}
    assert set(due_projects(engine, attempts, 1_000_000.0)) == {"often", "default-interval"}
    attempts.update({"often": 1_000_000.0, "default-interval": 1_000_000.0})
    assert due_projects(engine, attempts, 1_000_300.0) == []
    assert due_projects(engine, attempts, 1_000_600.0) == ["often"]


def test_http_errors_say_what_was_wrong(live: LiveService) -> None:
    admin = live.key("booking", "admin", "read")
    with live.client(admin) as client:
        half = client.post("/v1/drift/run", json={"model_name": "booking-world-model"})
        assert half.status_code == 400 and "together" in half.json()["detail"]
        unknown = client.post(
            "/v1/drift/run", json={"model_name": "booking-world-model", "model_version": "9"}
        )
        assert unknown.status_code == 404 and "no traffic" in unknown.json()["detail"]
        nothing = client.post("/v1/drift/run", json={}).raise_for_status().json()
        assert nothing == {"project": "booking", "versions": []}
        assert client.get("/v1/drift", params={"verdict": "maybe"}).status_code == 400
        assert client.get("/v1/drift", params={"cursor": "abc"}).status_code == 400
        assert client.get("/v1/drift").json() == {"items": [], "next_cursor": None}
    with live.client(live.key("booking", "ingest")) as client:
        assert client.get("/v1/drift").status_code == 403


def test_cli_configure_and_refusals(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    assert warden(tmp_path, url, "project", "create", "booking").returncode == 0
    done = warden(tmp_path, url, "drift", "configure", "--project", "booking",
                  "--current-count", "800", "--interval", "900")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"current_count": 800' in done.stdout and '"interval_seconds": 900' in done.stdout
    refused = warden(tmp_path, url, "drift", "configure", "--project", "booking",
                     "--window", "weekly")  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0 and "window" in refused.stderr
    half = warden(tmp_path, url, "drift", "run", "--project", "booking", "--model", "m")
    assert half.returncode == 2 and "together" in half.stderr
    empty = warden(tmp_path, url, "drift", "run", "--project", "booking")
    assert empty.returncode == 0 and "no world-model version" in empty.stdout
    missing = warden(tmp_path, url, "drift", "run", "--project", "nobody")
    assert missing.returncode == 1 and "nobody" in missing.stderr


def test_cli_chooses_pins_and_unpins_the_traffic_reference(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warden.db'}"
    assert warden(tmp_path, url, "project", "create", "booking").returncode == 0

    def configure(*args: str) -> dict[str, Any]:
        done = warden(tmp_path, url, "drift", "configure", "--project", "booking", *args)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    assert configure("--show")["reference"] == "spread"  # the default
    assert configure("--reference", "first")["reference"] == "first"
    assert configure("--reference", "preceding")["reference"] == "preceding"
    pinned = configure("--reference-since", "2026-11-24T00:00:00Z",
                       "--reference-until", "2026-11-25T00:00:00Z")  # fmt: skip
    assert pinned["reference_since"].startswith("2026-11-24T00:00:00")
    assert pinned["reference_until"].startswith("2026-11-25T00:00:00")
    unpinned = configure("--reference-since", "", "--reference-until", "")
    assert unpinned["reference_since"] is None and unpinned["reference_until"] is None
    refused = warden(tmp_path, url, "drift", "configure", "--project", "booking",
                     "--reference", "middle")  # fmt: skip
    assert refused.returncode == 1 and "reference" in refused.stderr


class Receiver:
    """A real HTTP receiver answering the status codes it is given, in order."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(receiver.statuses[min(len(receiver.bodies), len(statuses)) - 1])
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_alerts_are_retried_on_server_errors_only() -> None:
    pauses: list[float] = []
    flaky = Receiver([500, 429, 200])
    assert post_alert(flaky.url, {"a": 1}, attempts=4, sleep=pauses.append)
    assert len(flaky.bodies) == 3 and pauses == [0.5, 1.0]
    refused = Receiver([400])
    assert not post_alert(refused.url, {"a": 1}, attempts=4, sleep=pauses.append)
    assert len(refused.bodies) == 1  # the receiver refused this payload: not retried
    down = Receiver([503])
    assert not post_alert(down.url, {"a": 1}, attempts=3, sleep=lambda _s: None)
    assert len(down.bodies) == 3
    closed = f"http://127.0.0.1:{free_port()}/hook"
    assert not post_alert(closed, {"a": 1}, attempts=2, sleep=lambda _s: None)
    for receiver in (flaky, refused, down):
        receiver.server.shutdown()
