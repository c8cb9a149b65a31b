"""Real servers for tests and benchmarks: a PostgreSQL server (Debian's package, `initdb` into a
temporary folder, listening on 127.0.0.1 only) and an `mlflow server` process.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (or
`nobody`). Benchmarks import this module too (`from tests.servers import postgres_server`), so
a figure is measured on the same server the suite tests against.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise RuntimeError(
            f"PostgreSQL's {name} was not found: install Debian's 'postgresql' package "
            "(`.ci/run` does) or set WARDEN_TEST_POSTGRES_URL"
        )
    return found


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        )

    def create_database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def postgres_server(durable: bool = False) -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own for the `with` block, stopped and removed after it.

    Durability settings are off unless `durable`: tests throw their databases away, and a
    benchmark that reports what users will see asks for `durable=True`.
    """
    run_as: dict[str, int] = {}
    if os.geteuid() == 0:
        account = "postgres" if _has_user("postgres") else "nobody"
        entry = pwd.getpwnam(account)
        run_as = {"user": entry.pw_uid, "group": entry.pw_gid}
    root = Path(tempfile.mkdtemp(prefix="warden-pg-"))
    data = root / "data"
    if run_as:
        os.chown(root, run_as["user"], run_as["group"])
    port = free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    subprocess.run(
        [pg_bin("initdb"), "-D", str(data), "-U", "warden", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        env=env,
        cwd=root,
        **run_as,  # type: ignore[arg-type]
    )
    options = f"-h 127.0.0.1 -p {port} -k {root} -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c full_page_writes=off"
    subprocess.run(
        [pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
        env=env,
        cwd=root,
        **run_as,  # type: ignore[arg-type]
    )
    try:
        yield PostgresServer("127.0.0.1", port, "warden")
    finally:
        subprocess.run(
            [pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            env=env,
            cwd=root,
            **run_as,  # type: ignore[arg-type]
        )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(
    root: Path, backend_store_uri: str | None = None, workers: int = 1
) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 for the `with` block; its URL.

    Its backend store is `backend_store_uri` (a SQLite file under `root` by default) and it
    proxies artifacts to `root/artifacts` (`--artifacts-destination`), as a server in front
    of an object store does.
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mlflow = str(Path(sys.executable).parent / "mlflow")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    backend = backend_store_uri or f"sqlite:///{root / 'mlflow.db'}"
    with (root / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [mlflow, "server", "--backend-store-uri", backend,
             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(workers)],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start:\n{(root / 'server.log').read_text()[-2000:]}"
                )
            time.sleep(0.3)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
