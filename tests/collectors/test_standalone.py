"""The SDK installs and works on its own: a fresh virtual environment holding only its wheels.

`make install` builds the SDK's distributions (`warden-collectors`, `warden-policies`) and the
wheels of everything they need into `.venv/sdk-wheels`; here pip installs `warden-collectors`
from that folder alone (no index, no configuration of this machine), and a script in that
environment records a request to a loopback OTLP receiver in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.ingest.normalise import any_value
from collectors import conventions as wire

WHEELS = Path(sys.prefix) / "sdk-wheels"
SERVER_SIDE = ("torch", "fastapi", "mlflow", "evidently", "pyarrow", "psycopg")

SCRIPT = """
import json, sys
import collectors
import policies

report = {"module": collectors.__file__}
try:
    collectors.watch(object(), layers=["encoder"])
except collectors.ConfigurationError as exc:
    report["watch"] = str(exc)
try:
    collectors.Watch
except collectors.ConfigurationError as exc:
    report["Watch"] = str(exc)

collectors.init(endpoint=sys.argv[1], api_key="wdn_standalone", fingerprint_secret="s3cret",
                spool_dir=sys.argv[2], policies=policies.BUILTIN, service_name="standalone")
collectors.model("planner", "mpc-planner", "2")
with collectors.request({"text": "a room for 6"}, subject="u-17") as req:
    with collectors.llm_call(system="offline", request_model="intent-parser") as call:
        call.record(input_tokens=4, output_tokens=2)
    collectors.features({"intent_people": 6})
    collectors.decision(
        [{"action": "room-03@15:00", "score": 0.9, "predicted": {"conflict_probability": 0.02}}],
        "room-03@15:00", ["capacity>=6"], confidence=0.9)
    req.set_outcome("booked")
report["flushed"] = collectors.flush(timeout=30)
report["stats"] = collectors.stats()
collectors.shutdown()
report["loaded"] = sorted(sys.modules)
print(json.dumps(report))
"""


def _environment() -> dict[str, str]:
    """This process's environment without pip's settings: the wheel folder is the only source."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=_environment(), cwd=cwd
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh virtual environment where only the SDK was installed."""
    if not any(WHEELS.glob("warden_collectors-*.whl")):
        pytest.fail(f"no SDK wheels in {WHEELS}: `make install` (or `make sdk-wheels`) builds them")
    home = tmp_path_factory.mktemp("standalone")
    _run(sys.executable, "-m", "venv", home / "venv", cwd=home)
    python = home / "venv" / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", WHEELS,
         "warden-collectors", cwd=home)  # fmt: skip
    return python


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that keeps what it is sent and answers as a collector does."""

    bodies: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            type(self).bodies.append(body)
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    handler = type("Receiver", (_Receiver,), {"bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.bodies
    finally:
        server.shutdown()
        server.server_close()


def test_only_the_sdk_and_its_own_dependencies_are_installed(
    sdk_python: Path, tmp_path: Path
) -> None:
    listed = json.loads(_run(sdk_python, "-m", "pip", "list", "--format=json", cwd=tmp_path))
    names = {p["name"].lower().replace("_", "-") for p in listed}
    assert {"warden-collectors", "warden-policies", "opentelemetry-sdk"} <= names
    assert not names & {*SERVER_SIDE, "psycopg-binary", "sqlalchemy", "pandas", "warden"}
    _run(sdk_python, "-m", "pip", "check", cwd=tmp_path)


def test_import_record_and_export_without_torch_or_the_service(
    sdk_python: Path, tmp_path: Path, receiver: tuple[str, list[bytes]]
) -> None:
    url, bodies = receiver
    script = tmp_path / "record.py"
    script.write_text(SCRIPT)
    # -I: neither this checkout nor PYTHONPATH is on the path, only the installed wheels.
    report = json.loads(_run(sdk_python, "-I", script, url, tmp_path / "spool", cwd=tmp_path))

    assert report["module"].startswith(str(sdk_python.parent.parent))
    for name in ("watch", "Watch"):
        assert "needs PyTorch" in report[name] and "pip install" in report[name]
    assert not [m for m in report["loaded"] if m.split(".")[0] in SERVER_SIDE]
    assert report["flushed"] is True
    assert (report["stats"]["exported"], report["stats"]["dropped"]) == (3, 0)

    request = ExportTraceServiceRequest()
    for body in bodies:
        request.MergeFromString(body)
    (resource_spans,) = request.resource_spans
    resource = {kv.key: any_value(kv.value) for kv in resource_spans.resource.attributes}
    assert resource[wire.TELEMETRY_SDK_NAME] == wire.SDK_NAME
    assert resource[wire.SERVICE_NAME] == "standalone"
    spans = {s.name: s for ss in resource_spans.scope_spans for s in ss.spans}
    assert set(spans) == {
        wire.REQUEST_SPAN, wire.llm_span("chat", "intent-parser"), wire.DECISION_SPAN,
    }  # fmt: skip
    root = {kv.key: any_value(kv.value) for kv in spans[wire.REQUEST_SPAN].attributes}
    assert root[wire.REQUEST_SUBJECT] == "u-17"
    assert root[wire.REQUEST_OUTCOME] == "booked"
    assert root[wire.model_version("planner")] == "2"
    assert json.loads(root[wire.INPUT_FEATURES]) == {"intent_people": 6}
    # The builtin policies (shipped in warden-policies) were evaluated by CEL in that process.
    decided = spans[wire.DECISION_SPAN]
    evaluated = {
        any_value(kv.value)
        for event in decided.events
        if event.name == wire.POLICY_EVENT
        for kv in event.attributes
        if kv.key == wire.POLICY_ID
    }
    assert "risk-cap" in evaluated
