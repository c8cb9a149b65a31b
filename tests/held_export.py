"""An OTLP export held half-sent, to take a place of the service's ingest bound on purpose
(app/ingest/admission.py), and reading the service's own metrics while it is held."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx

# Bytes of the body sent before the export is held.
_HEAD_BYTES = 16


@contextlib.contextmanager
def held_export(url: str, key: str, body: bytes) -> Iterator[socket.socket]:
    """An export whose body is still arriving: the service has admitted it and keeps its
    place until `finish` sends the rest."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    head = (
        f"POST /v1/traces HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/x-protobuf\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body[:_HEAD_BYTES])
    try:
        yield sock
    finally:
        sock.close()


def finish(sock: socket.socket, body: bytes) -> int:
    """Send the rest of a held export's body; its answer's status."""
    sock.sendall(body[_HEAD_BYTES:])
    return int(sock.makefile("rb").readline().split()[1])


def metric(url: str, name: str) -> float:
    """A sample of the service's /metrics (0 when absent)."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait for a state of the server, not for time: the bound only turns a hang into a
    failure."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.02)
