"""A live `warden serve` for the benchmarks: a real process on a free loopback port."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WARDEN = Path(sys.executable).parent / "warden"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(data_dir: Path) -> dict[str, str]:
    """This environment without WARDEN_* settings, storing under `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    env["WARDEN_DATA_DIR"] = str(data_dir)
    env["WARDEN_CONFIG"] = str(data_dir / "none.toml")  # no warden.toml from the cwd
    return env


def run_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(WARDEN), *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"warden {' '.join(args)} failed ({done.returncode}):\n"
                           f"{done.stdout}{done.stderr}")  # fmt: skip
    return done.stdout


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    key: str = ""  # the admin key `warden serve` prints on a store's first run

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_server(
    data_dir: Path, env: dict[str, str] | None = None, workers: int = 1, timeout: float = 60.0,
    want_key: bool = False, argv: Callable[[int], list[str]] | None = None,
) -> Server:  # fmt: skip
    """`warden serve` with `env` (default: `clean_env(data_dir)`), ready when it returns;
    `argv(port)` runs another server command instead (a variant under measurement)."""
    env = env or clean_env(data_dir)
    port = free_port()
    log = data_dir / "server.log"
    command = argv(port) if argv else [
        str(WARDEN), "serve", "--host", "127.0.0.1", "--port", str(port),
        *(["--workers", str(workers)] if workers != 1 else []),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            env=env, cwd=data_dir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = Server(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"warden serve exited with {proc.returncode}:\n{server.tail()}")
        if want_key and not server.key:
            words = log.read_text(errors="replace").split()
            server.key = next((w for w in words if w.startswith("wdn_")), "")
        if server.key or not want_key:
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                try:
                    conn.request("GET", "/readyz")
                    if conn.getresponse().status == 200:
                        return server
                finally:
                    conn.close()
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"warden serve not ready in {timeout:.0f}s:\n{server.tail()}")


def stop_server(server: Server) -> None:
    if server.proc.poll() is not None:
        return
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        # The server runs in a session of its own: end its whole group, workers included.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=15)


def get_json(port: int, key: str, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data.decode(errors="replace")


def count_rows(db: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()
