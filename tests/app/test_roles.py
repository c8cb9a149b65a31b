"""`warden serve --role`: an `api` process answers HTTP and runs no background job, a
`worker` runs the jobs and answers only health and metrics, `all` does both; real processes
on one database (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from app.audit import heads
from app.drift import settings as drift_settings
from app.tenancy import projects
from tests import otlp
from tests.conftest import warden_serve

# Every background job of the service: the ones led in the database, and the export queue.
JOBS = (
    "audit-checkpoints", "drift-schedule", "lineage", "dashboard-rollups", "experiments",
    "exports",
)  # fmt: skip
FAST_JOBS = {
    "WARDEN_LINEAGE_INTERVAL": "0.3",
    "WARDEN_DRIFT_TICK": "0.3",
    "WARDEN_AUDIT_CHECKPOINT_INTERVAL": "0.3",
    "WARDEN_DASHBOARD_ROLLUP_INTERVAL": "0.3",
    "WARDEN_EXPERIMENT_RESULTS_INTERVAL": "0.3",
}


def until(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def daemons(url: str) -> tuple[dict[str, float], dict[str, float]]:
    """(leader gauge, rounds counter) by job, from the process's /metrics."""
    answer = httpx.get(f"{url}/metrics", timeout=30).raise_for_status()
    leader: dict[str, float] = {}
    ticks: dict[str, float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "warden_daemon_leader":
                leader[sample.labels["daemon"]] = sample.value
            elif sample.name == "warden_daemon_ticks_total":
                ticks[sample.labels["daemon"]] = sample.value
    return leader, ticks


def shared_env(tmp_path: Path) -> dict[str, str]:
    """What every process of one deployment shares: the secrets and the signing key."""
    key_file = tmp_path / "audit-signing.key"
    heads.save_private_key(heads.generate_key(), key_file)
    return {
        **FAST_JOBS,
        "WARDEN_AUDIT_SIGNING_KEY": str(key_file),
        "WARDEN_FINGERPRINT_SECRET": "roles-fingerprint-secret",
    }


def serve_command(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`warden serve ARGS` run to its end (for the ways it refuses to start)."""
    env = {
        **os.environ,
        "WARDEN_DATA_DIR": str(tmp_path / "data"),
        "WARDEN_DATABASE_URL": f"sqlite:///{tmp_path / 'warden.db'}",
        "COLUMNS": "200",
    }
    warden = str(Path(sys.executable).parent / "warden")
    return subprocess.run(
        [warden, "serve", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_an_api_process_runs_no_job_and_a_worker_runs_them_all_and_serves_only_health(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    env = shared_env(tmp_path)
    roots = [tmp_path / "api", tmp_path / "worker"]
    for root in roots:
        root.mkdir()
    with warden_serve(roots[0], database_url, "--role", "api", env=env) as api:
        auth = {"Authorization": f"Bearer {api.key}"}
        # A started job sets its metrics before the app serves: none means none started.
        assert daemons(api.url) == ({}, {})
        # Drift rounds stay light: the default project's drift schedule is off.
        pid = projects.project_id(engine, projects.DEFAULT_PROJECT)
        drift_settings.update_settings(engine, pid, {"interval_seconds": 0})
        body = otlp.request(otlp.hybrid_trace(otlp.Ids(1))).SerializeToString()
        stored = httpx.post(
            f"{api.url}/v1/traces", content=body, headers={**auth, **otlp.PROTOBUF}, timeout=30
        )
        assert stored.status_code == 200, stored.text

        with warden_serve(
            roots[1], database_url, "--role", "worker", first_run=False, env=env
        ) as worker:

            def leads_and_runs_every_job() -> bool:
                leader, ticks = daemons(worker.url)
                return all(leader.get(job) == 1 and ticks.get(job, 0) >= 1 for job in JOBS)

            until(leads_and_runs_every_job, "the worker's rounds of every job")

            def signed() -> bool:
                answer = httpx.get(f"{api.url}/v1/audit/heads", headers=auth, timeout=30)
                return bool(answer.raise_for_status().json()["items"])

            # The worker signs the head of the ledger the API's ingest grew.
            until(signed, "a head signed by the worker")
            assert daemons(api.url) == ({}, {})

            assert httpx.get(f"{worker.url}/healthz").json() == {"status": "ok"}
            assert httpx.get(f"{worker.url}/readyz").json() == {"status": "ready"}
            for method, path in [
                ("GET", "/v1/requests"), ("POST", "/v1/traces"), ("GET", "/v1/audit/heads"),
                ("POST", "/v1/exports"), ("PUT", "/v1/tensors/" + "0" * 64), ("GET", "/ui/login"),
                ("GET", "/docs"), ("GET", "/openapi.json"),
            ]:  # fmt: skip
                answer = httpx.request(method, f"{worker.url}{path}", headers=auth, timeout=30)
                assert answer.status_code == 404, (method, path, answer.text)
                assert httpx.request(method, f"{api.url}{path}", headers=auth).status_code != 404
        assert api.proc.poll() is None


def test_role_all_serves_the_api_and_runs_every_job_and_the_flag_wins_over_the_setting(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    pid = projects.create_project(engine, projects.DEFAULT_PROJECT)
    drift_settings.update_settings(engine, pid, {"interval_seconds": 0})
    key = projects.create_key(engine, b"serve-secret", projects.DEFAULT_PROJECT, ["read"])
    env = {**shared_env(tmp_path), "WARDEN_ROLE": "worker"}
    with warden_serve(
        tmp_path, database_url, "--role", "all", first_run=False, secret="serve-secret", env=env
    ) as both:

        def leads_and_runs_every_job() -> bool:
            leader, ticks = daemons(both.url)
            return all(leader.get(job) == 1 and ticks.get(job, 0) >= 1 for job in JOBS)

        until(leads_and_runs_every_job, "the rounds of every job")
        answer = httpx.get(
            f"{both.url}/v1/requests", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        assert httpx.get(f"{both.url}/openapi.json").status_code == 200


def test_a_bad_role_and_several_worker_processes_are_refused_in_one_line(
    tmp_path: Path,
) -> None:
    for args, message in [
        (("--role", "everything"), "error: --role 'everything': write api, worker or all"),
        (("--role", "worker", "--workers", "2"), "error: --workers applies to the api and all"),
    ]:
        result = serve_command(tmp_path, *args)
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith(message), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # Refused before touching the database.
    assert not (tmp_path / "warden.db").exists()
    described = serve_command(tmp_path, "--help")
    assert described.returncode == 0
    assert "--role" in described.stdout and "/healthz, /readyz and /metrics" in described.stdout
