"""The several-machine topology, run on this one with real processes: a PostgreSQL database,
an `mlflow server` (its backend store a database of its own in the same PostgreSQL server),
API replicas (`warden serve --role api`, each with a data folder of its own) and workers
(`warden serve --role worker`). Every process shares the database, the tracking server and
the secrets `warden keys init` made (one env file, one signing key) — nothing else: whatever
a user can ask any replica for must live there.

tests/test_topology.py checks the topology's promises with it and bench/topology.py measures
its throughput. The traffic is OTLP/HTTP protobuf, as the SDK and the Collector send it:
demo-like requests of the hybrid stack (tests/otlp.py: an LLM call, a world-model rollout
with latent states, a planner decision).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from app.audit import heads
from app.config import Settings
from app.drift import settings as drift_settings
from app.store import schema
from app.store.engine import create_db_engine
from app.tenancy import projects
from tests import otlp
from tests.servers import PostgresServer, free_port, mlflow_server

PROJECT = "topology"
WARDEN = Path(sys.executable).parent / "warden"


@dataclass
class Served:
    """One `warden serve` process: its role, URL, data folder and log."""

    name: str
    role: str
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path

    @property
    def log(self) -> Path:
        return self.data_dir / "serve.log"

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no release of anything but what the kernel closes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> None:
        """SIGTERM: a graceful stop, not waited for."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def daemons(self) -> tuple[dict[str, float], dict[str, float]]:
        """From /metrics: who leads (`warden_daemon_leader`) and the rounds run
        (`warden_daemon_ticks_total`), by job."""
        leader: dict[str, float] = {}
        ticks: dict[str, float] = {}
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "warden_daemon_leader":
                    leader[sample.labels["daemon"]] = sample.value
                elif sample.name == "warden_daemon_ticks_total":
                    ticks[sample.labels["daemon"]] = sample.value
        return leader, ticks


@dataclass
class Topology:
    """The processes of one deployment and what a client of it holds (an admin key)."""

    root: Path
    database_url: str
    tracking_uri: str
    secrets: dict[str, str]  # the WARDEN_* lines of `warden keys init`'s env file
    engine: Engine
    key: str
    intervals: dict[str, str]
    served: list[Served] = field(default_factory=list)

    def env(self, data_dir: Path) -> dict[str, str]:
        # No WARDEN_* of the caller's, and no warden.toml from a working directory.
        base = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        return {
            **base,
            "WARDEN_CONFIG": str(data_dir / "none.toml"),
            "WARDEN_DATA_DIR": str(data_dir),
            "WARDEN_DATABASE_URL": self.database_url,
            "WARDEN_MLFLOW_TRACKING_URI": self.tracking_uri,
            **self.secrets,
            **self.intervals,
        }

    @property
    def signing_key(self) -> Path:
        return Path(self.secrets["WARDEN_AUDIT_SIGNING_KEY"])

    def start(self, name: str, role: str, *args: str) -> Served:
        """`warden serve --role ROLE` with a data folder of its own, ready when returned."""
        return self.ready(self.launch(name, role, *args))

    def launch(self, name: str, role: str, *args: str) -> Served:
        """`warden serve --role ROLE` with a data folder of its own, started (`ready` waits)."""
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        with (data_dir / "serve.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(WARDEN), "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--role", role, *args],
                env=self.env(data_dir), cwd=data_dir, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        served = Served(name, role, proc, f"http://127.0.0.1:{port}", data_dir)
        self.served.append(served)
        return served

    def ready(self, served: Served, timeout: float = 120.0) -> Served:
        """`served` once its /readyz answers 200."""
        name = served.name
        deadline = time.monotonic() + timeout
        while True:
            if not served.alive():
                raise RuntimeError(f"{name} exited with {served.proc.returncode}:\n{served.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{served.url}/readyz", timeout=2).status_code == 200:
                    return served
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready in {timeout:.0f}s:\n{served.tail()}")
            time.sleep(0.1)

    def client(self, served: Served) -> httpx.Client:
        return httpx.Client(
            base_url=served.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )

    def public_key(self) -> Path:
        """The signing key's public half, as an auditor holds it."""
        path = self.root / "audit-signing.pub.pem"
        if not path.exists():
            path.write_text(heads.public_key_pem(heads.load_private_key(self.signing_key)))
        return path

    def key_id(self) -> str:
        return heads.key_id(heads.load_private_key(self.signing_key).public_key())


def keys_init(folder: Path) -> dict[str, str]:
    """`warden keys init FOLDER`: the deployment's shared secrets, as its env file has them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    subprocess.run([str(WARDEN), "keys", "init", str(folder)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    lines = (folder / "warden.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


@contextlib.contextmanager
def topology(
    pg: PostgresServer, root: Path, intervals: dict[str, str] | None = None
) -> Iterator[Topology]:
    """A fresh database and tracking server on `pg`, a project with an admin key, the shared
    secrets; no `warden` process yet (`Topology.start` adds them). Stops everything after."""
    suffix = uuid.uuid4().hex[:10]
    database_url = pg.create_database(f"warden_{suffix}")
    mlflow_url = pg.create_database(f"mlflow_{suffix}")
    root.mkdir(parents=True, exist_ok=True)
    secrets = keys_init(root / "keys")
    settings = Settings(
        data_dir=root / "setup", database_url=database_url,
        secret_key=secrets["WARDEN_SECRET_KEY"],
        fingerprint_secret=secrets["WARDEN_FINGERPRINT_SECRET"],
        audit_signing_key=Path(secrets["WARDEN_AUDIT_SIGNING_KEY"]),
    )  # fmt: skip
    # The schema and the project exist before any process starts: processes starting at once
    # then never race a migration, and no first run prints a key.
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    project_id = projects.create_project(engine, PROJECT)
    # No scheduled drift job until a test asks for one (a job due at the first round, with
    # no traffic yet, would push the next one an interval away).
    drift_settings.update_settings(engine, project_id, {"interval_seconds": 0})
    key = projects.create_key(engine, settings.server_secret(), PROJECT, ["admin"])
    try:
        with mlflow_server(root / "mlflow", mlflow_url) as tracking_uri:
            topo = Topology(root, database_url, tracking_uri, secrets, engine, key, intervals or {})
            try:
                yield topo
            finally:
                # All told at once, then each waited for: the slowest stop, not their sum.
                for served in topo.served:
                    served.terminate()
                for served in topo.served:
                    served.stop()
    finally:
        engine.dispose()
        with pg.admin() as conn:
            for name in (f"warden_{suffix}", f"mlflow_{suffix}"):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The traffic.


@dataclass(frozen=True)
class Batch:
    """One OTLP export request: its encoded body and the trace ids (requests) it carries."""

    body: bytes
    trace_ids: tuple[str, ...]
    spans: int


def batches(count: int, per_batch: int, seed: int) -> list[Batch]:
    """`count` export requests of `per_batch` demo requests each, started now (drift jobs
    judge the versions seen in the last day) a millisecond apart."""
    ids = otlp.Ids(seed)
    now = time.time_ns()
    made = []
    for b in range(count):
        spans = []
        traces = []
        for r in range(per_batch):
            start = now + (b * per_batch + r) * 1_000_000
            trace = otlp.hybrid_trace(ids, start=start)
            traces.append(trace[0].trace_id.hex())
            spans.extend(trace)
        body = otlp.request(spans).SerializeToString()
        made.append(Batch(body, tuple(traces), len(spans)))
    return made


def send(client: httpx.Client, batch: Batch) -> bool:
    """POST one batch to /v1/traces; True when the server acknowledged it (200)."""
    try:
        response = client.post("/v1/traces", content=batch.body, headers=otlp.PROTOBUF)
    except httpx.TransportError:
        return False
    return response.status_code == 200


class Sender:
    """Client threads, one per API replica, taking batches from one queue, as a Collector
    balancing over replicas does: a batch a replica did not acknowledge goes back to the
    queue for any replica, and a replica that failed is not sent to again. `acked` holds
    the trace ids of every acknowledged batch."""

    def __init__(self, topo: Topology, apis: Iterable[Served], work: list[Batch]) -> None:
        self.topo = topo
        self.apis = list(apis)
        self.queue = list(reversed(work))
        self.lock = threading.Lock()
        self.acked: list[str] = []
        self.acked_batches = 0
        self.spans = 0
        self.failures = 0
        self.threads = [threading.Thread(target=self._run, args=(api,)) for api in self.apis]

    def start(self) -> Sender:
        for thread in self.threads:
            thread.start()
        return self

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def _take(self) -> Batch | None:
        with self.lock:
            return self.queue.pop() if self.queue else None

    def _run(self, api: Served) -> None:
        with self.topo.client(api) as client:
            while (batch := self._take()) is not None:
                if send(client, batch):
                    with self.lock:
                        self.acked.extend(batch.trace_ids)
                        self.acked_batches += 1
                        self.spans += batch.spans
                    continue
                with self.lock:
                    self.queue.append(batch)
                    self.failures += 1
                return
