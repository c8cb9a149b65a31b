"""The deployment beyond one machine, run here with real processes: PostgreSQL, an `mlflow
server` on PostgreSQL, two API replicas with different data folders and two workers (the
second a standby), sharing only the database, the tracking server and the secrets.

One set of processes serves every test of the module, in order: traffic through both APIs,
a tensor and an export across them, the signer and a scheduled drift job, then an API and
the leading worker killed with SIGKILL.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import ColumnElement, func, select

from app.audit import ledger
from app.drift import settings as drift_settings
from app.store.engine import read_connection
from app.store.tables import (
    AuditCheckpoint,
    AuditEvent,
    DriftReport,
    ExportJob,
    Request,
    Span,
    WorldModelState,
)
from app.tenancy.projects import project_id
from tests.servers import PostgresServer
from tests.topology import PROJECT, WARDEN, Sender, Served, Topology, batches, send, topology

pytestmark = pytest.mark.postgres

# The jobs a worker leads (app/daemons.py), each run by one process of the deployment.
JOBS = (
    "audit-checkpoints", "drift-schedule", "lineage", "dashboard-rollups", "experiments",
    "exports",
)  # fmt: skip
# Short rounds, so a job's effect (and a takeover) shows within seconds.
INTERVALS = {
    "WARDEN_AUDIT_CHECKPOINT_INTERVAL": "0.5",
    "WARDEN_DRIFT_TICK": "0.5",
    "WARDEN_LINEAGE_INTERVAL": "1",
    "WARDEN_DASHBOARD_ROLLUP_INTERVAL": "1",
    "WARDEN_EXPERIMENT_RESULTS_INTERVAL": "1",
}
FIRST_REQUESTS = 200  # 40 batches of 5, the first traffic


def until(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.1)


class Deployment:
    """The module's processes: `apis` (2) and `workers` (the leader first, then a standby)."""

    def __init__(self, topo: Topology, apis: list[Served], workers: list[Served]) -> None:
        self.topo = topo
        self.apis = apis
        self.workers = workers
        self.first_acked: list[str] = []

    def count(self, table: type, *where: ColumnElement[bool]) -> int:
        query = select(func.count()).select_from(table).where(*where)
        with read_connection(self.topo.engine) as conn:
            return int(conn.execute(query).scalar_one())

    def runner(self, job: str) -> int:
        """The process id of the process that ran an export job."""
        with read_connection(self.topo.engine) as conn:
            runner = conn.scalar(select(ExportJob.runner).where(ExportJob.id == job))
        assert runner is not None, job
        return int(runner.rsplit(":", 1)[1])

    def signed_size(self, pid: int) -> int:
        """The tree size of the project's largest signed head; 0 before the first."""
        query = select(func.max(AuditCheckpoint.tree_size)).where(AuditCheckpoint.project_id == pid)
        with read_connection(self.topo.engine) as conn:
            return int(conn.execute(query).scalar_one() or 0)


@pytest.fixture(scope="module")
def deployment(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    with topology(postgres, tmp_path_factory.mktemp("topology"), INTERVALS) as topo:
        # The first worker leads every job before the second starts: the second stands by.
        workers = [topo.start("worker-1", "worker")]
        until(lambda: all(workers[0].daemons()[0].get(job) == 1 for job in JOBS),
              "the first worker leading every job")  # fmt: skip
        # The rest start side by side.
        starting = [topo.launch(name, role) for name, role in
                    (("worker-2", "worker"), ("api-1", "api"), ("api-2", "api"))]  # fmt: skip
        standby, *apis = [topo.ready(served) for served in starting]
        yield Deployment(topo, apis, [*workers, standby])


def _project_id(deployment: Deployment) -> int:
    return project_id(deployment.topo.engine, PROJECT)


def test_every_request_sent_through_either_api_is_stored_once(deployment: Deployment) -> None:
    topo, (one, two) = deployment.topo, deployment.apis
    work = batches(FIRST_REQUESTS // 5, 5, seed=1)
    sender = Sender(topo, [one, two], work).start()
    sender.join()
    assert not sender.queue and sender.failures == 0, sender.failures
    # A client that lost an acknowledgement resends the batch, to whichever replica.
    with topo.client(two) as client:
        assert send(client, work[0])
    with topo.client(one) as client:
        assert send(client, work[-1])
    deployment.first_acked = sender.acked
    pid = _project_id(deployment)
    with read_connection(topo.engine) as conn:
        stored = conn.scalars(select(Request.trace_id).where(Request.project_id == pid)).all()
    assert sorted(stored) == sorted(sender.acked) and len(stored) == FIRST_REQUESTS
    assert deployment.count(Span, Span.project_id == pid) == FIRST_REQUESTS * 4
    # 8 steps x 2 layers of latent states per request.
    assert deployment.count(WorldModelState, WorldModelState.project_id == pid) == (
        FIRST_REQUESTS * 16
    )


def test_a_tensor_put_through_one_api_is_read_through_the_other(deployment: Deployment) -> None:
    topo, (one, two) = deployment.topo, deployment.apis
    buffer = io.BytesIO()
    np.save(buffer, np.arange(64, dtype=np.float32).reshape(4, 16))
    body = buffer.getvalue()
    digest = hashlib.sha256(body).hexdigest()
    with topo.client(one) as client:
        assert client.put(f"/v1/tensors/{digest}", content=body).status_code == 201
    with topo.client(two) as client:
        got = client.get(f"/v1/tensors/{digest}")
        assert got.status_code == 200, got.text
        assert got.content == body
        # Stored already: the same content, whichever replica is asked.
        assert client.put(f"/v1/tensors/{digest}", content=body).status_code == 200
    for served in deployment.apis:
        assert not list(served.data_dir.rglob(f"{digest}*")), served.name


def test_an_export_started_through_one_api_is_downloaded_through_the_other_and_verifies(
    deployment: Deployment, tmp_path: Path
) -> None:
    topo, (one, two) = deployment.topo, deployment.apis
    with topo.client(one) as client:
        started = client.post("/v1/exports", json={})
        assert started.status_code == 202, started.text
    job = started.json()["id"]
    with topo.client(two) as client:

        def finished() -> bool:
            status = client.get(f"/v1/exports/{job}")
            assert status.status_code == 200, status.text
            assert status.json()["status"] != "failed", status.json()
            return bool(status.json()["status"] == "done")

        until(finished, "the export job done")
        download = client.get(f"/v1/exports/{job}/download")
        assert download.status_code == 200, download.text
        done = client.get(f"/v1/exports/{job}").json()
    digest = hashlib.sha256(download.content).hexdigest()
    assert done["bundle"]["sha256"] == digest
    # The worker ran it, and the bundle is in the tracking server's artifact store.
    assert deployment.runner(job) == deployment.workers[0].proc.pid
    stored = [p.read_bytes() for p in (topo.root / "mlflow").rglob("bundle.zip")]
    assert [hashlib.sha256(b).hexdigest() for b in stored] == [digest]
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(download.content)
    verified = subprocess.run(
        [str(WARDEN), "verify", str(bundle), "--public-key", str(topo.public_key())],
        capture_output=True, text=True, env=topo.env(tmp_path), cwd=tmp_path, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # No replica's or worker's data folder holds the bundle: it lives in MLflow's store.
    for served in deployment.apis + deployment.workers:
        assert not list(served.data_dir.rglob("*.zip")), served.name


def test_one_process_signs_checkpoints_with_the_one_shared_key(deployment: Deployment) -> None:
    topo = deployment.topo
    pid = _project_id(deployment)
    size = deployment.count(AuditEvent, AuditEvent.project_id == pid)
    assert size > 0

    until(lambda: deployment.signed_size(pid) >= size, "a head of the ledger as it is")
    with read_connection(topo.engine) as conn:
        key_ids = set(conn.scalars(select(AuditCheckpoint.key_id).distinct()).all())
    assert key_ids == {topo.key_id()}
    leader, ticks = deployment.workers[0].daemons()
    assert leader["audit-checkpoints"] == 1 and ticks["audit-checkpoints"] > 0
    standby_leader, standby_ticks = deployment.workers[1].daemons()
    assert standby_leader["audit-checkpoints"] == 0
    assert standby_ticks.get("audit-checkpoints", 0) == 0
    for api in deployment.apis:
        api_leader, api_ticks = api.daemons()
        # An API replica runs no background job at all.
        assert not any(api_leader.values()) and not any(api_ticks.values()), api.name


def test_a_scheduled_drift_job_runs_once(deployment: Deployment) -> None:
    topo = deployment.topo
    worker = deployment.workers[0]
    pid = _project_id(deployment)
    assert deployment.count(DriftReport, DriftReport.project_id == pid) == 0
    drift_settings.update_settings(
        topo.engine, pid,
        {"interval_seconds": 3600, "reference_count": 20, "current_count": 20,
         "min_requests": 20},
    )  # fmt: skip
    until(
        lambda: deployment.count(AuditEvent, AuditEvent.kind == ledger.DRIFT_VERDICT) > 0,
        "the scheduled drift job's verdict",
        timeout=240,
    )
    # Several more rounds of the schedule, on every worker: none runs the job again.
    at_verdict = worker.daemons()[1]["drift-schedule"]
    until(lambda: worker.daemons()[1]["drift-schedule"] >= at_verdict + 4, "more rounds")
    assert deployment.count(AuditEvent, AuditEvent.kind == ledger.DRIFT_VERDICT) == 1
    with read_connection(topo.engine) as conn:
        jobs = conn.scalars(
            select(DriftReport.job_id).where(DriftReport.project_id == pid).distinct()
        ).all()
    assert len(jobs) == 1
    assert deployment.workers[1].daemons()[1].get("drift-schedule", 0) == 0


def test_sigkill_of_an_api_mid_traffic_loses_no_acknowledged_request(
    deployment: Deployment,
) -> None:
    topo, (one, two) = deployment.topo, deployment.apis
    work = batches(60, 5, seed=2)
    sender = Sender(topo, [one, two], work).start()
    until(lambda: sender.acked_batches >= 10, "traffic through both replicas")
    one.kill()
    with sender.lock:
        left_at_kill = len(sender.queue)
    sender.join()
    assert left_at_kill > 0, "the replica was killed after the traffic ended"
    # The survivor took every batch the killed replica did not acknowledge.
    assert not sender.queue
    pid = _project_id(deployment)
    with read_connection(topo.engine) as conn:
        stored = conn.scalars(select(Request.trace_id).where(Request.project_id == pid)).all()
    assert len(stored) == len(set(stored))
    assert set(sender.acked) <= set(stored)
    assert set(stored) == set(sender.acked) | set(deployment.first_acked)


def test_sigkill_of_the_worker_moves_its_jobs_to_the_second_worker(
    deployment: Deployment,
) -> None:
    topo = deployment.topo
    leader, standby = deployment.workers
    api = deployment.apis[1]
    assert all(leader.daemons()[0][job] == 1 for job in JOBS)
    assert not any(standby.daemons()[0].values())
    leader.kill()
    until(lambda: all(standby.daemons()[0].get(job) == 1 for job in JOBS),
          "the second worker leading every job")  # fmt: skip
    pid = _project_id(deployment)
    before = deployment.signed_size(pid)
    signed_before = standby.daemons()[1]["audit-checkpoints"]
    # An export runs there, and the ledger event it writes is signed there.
    with topo.client(api) as client:
        started = client.post("/v1/exports", json={})
        assert started.status_code == 202, started.text
        job = started.json()["id"]
        until(lambda: client.get(f"/v1/exports/{job}").json()["status"] == "done",
              "the export job done by the second worker")  # fmt: skip
    assert deployment.runner(job) == standby.proc.pid
    size = deployment.count(AuditEvent, AuditEvent.project_id == pid)
    assert size > before
    until(lambda: deployment.signed_size(pid) >= size, "a head of the grown ledger")
    assert standby.daemons()[1]["audit-checkpoints"] > signed_before
    assert standby.alive() and api.alive()
