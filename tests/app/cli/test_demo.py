"""`warden demo` and `warden replay` reach the stack through `WARDEN_DEMO` and
`WARDEN_REPLAY`: any stack meeting the contracts, and one line of error for one that cannot be
loaded or answers outside them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collectors import conventions as wire
from collectors import fingerprint
from tests import otlp
from tests.app.cli import plain_stack
from tests.app.cli.in_process import run
from tests.conftest import TEST_SECRET, LiveService

STACK = "tests.app.cli.plain_stack"
SECRET = "plain-fingerprint-secret"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("WARDEN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WARDEN_DATABASE_URL", f"sqlite:///{tmp_path / 'warden.db'}")
    monkeypatch.setenv("WARDEN_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("WARDEN_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("WARDEN_FINGERPRINT_SECRET", SECRET)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def test_demo_runs_the_stack_the_settings_name(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_DEMO", f"{STACK}:demo")
    output = run(cli, "demo", "--endpoint", "http://127.0.0.1:9", "--api-key", "wdn_k",
                 "--requests", "6", "--seed", "7", "--shift")  # fmt: skip
    assert "plain stack: http://127.0.0.1:9 key wdn_k shift=True seed=7 rate=None " in output
    assert "spool=spool secret=yes" in output
    assert output.strip().endswith(
        "6 requests (refused 2, seated 4); all delivered. SDK: {'exported': 6}"
    )


def test_an_experiment_reaches_the_stack_only_when_asked_for(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_DEMO", f"{STACK}:experiment_demo")
    base = ["demo", "--endpoint", "http://127.0.0.1:9", "--api-key", "wdn_k", "--requests", "3"]
    ab = run(cli, *base, "--experiment", "ab")
    assert "plain stack: experiment=ab" in ab
    # The experiment the stack names is where the user is sent to see its result.
    assert "The experiment's result: warden experiment show plain-ab " in ab
    assert "plain stack: experiment=shadow" in run(cli, *base, "--experiment", "shadow")
    plain = run(cli, *base)
    assert "plain stack: experiment=None" in plain and "warden experiment show" not in plain
    assert "Invalid value for '--experiment'" in run(cli, *base, "--experiment", "abc", code=2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("plain_stack", "WARDEN_DEMO='plain_stack': write it as module:callable"),
        (
            "tests.app.cli.absent:demo",
            "WARDEN_DEMO='tests.app.cli.absent:demo': cannot import tests.app.cli.absent "
            "(ModuleNotFoundError: No module named 'tests.app.cli.absent')",
        ),
        (f"{STACK}:nothing", f"WARDEN_DEMO='{STACK}:nothing': {STACK} has no callable 'nothing'"),
        (f"{STACK}:ASKED", f"WARDEN_DEMO='{STACK}:ASKED': {STACK} has no callable 'ASKED'"),
    ],
)
def test_a_demo_that_cannot_be_loaded_is_one_line(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spec: str, message: str
) -> None:
    monkeypatch.setenv("WARDEN_DEMO", spec)
    output = run(cli, "demo", code=1)
    assert output == f"error: {message}\n"
    assert not (tmp_path / "warden.db").exists()  # refused before it served anything


def _stored_request(live: LiveService) -> str:
    spans = otlp.hybrid_trace(otlp.Ids(71), **{
        wire.REQUEST_FINGERPRINT: fingerprint(plain_stack.ASKED, SECRET.encode()),
        "warden.model.world_model.name": "plain-model",
        "warden.model.world_model.version": "1",
    })  # fmt: skip
    body = otlp.request(spans).SerializeToString()
    with live.client(live.key("default", "ingest")) as client:
        client.post("/v1/traces", content=body, headers=otlp.PROTOBUF).raise_for_status()
    return spans[0].trace_id.hex()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_replay_compares_any_stack_and_judges_its_decisions(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, live: LiveService
) -> None:
    monkeypatch.setenv("WARDEN_DATABASE_URL", live.settings.resolved_database_url)
    monkeypatch.setenv("WARDEN_REPLAY", f"{STACK}:replay")
    request_id = _stored_request(live)
    asked = [
        "replay",
        request_id,
        "--model",
        "plain-model",
        "--input",
        json.dumps(plain_stack.ASKED),
    ]
    output = run(cli, *asked, "--version", "2")
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in output.splitlines() if line.startswith("│")}  # fmt: skip
    assert rows["answer"] == ["seated", "seated"]
    assert rows["chosen"] == ["room-01@19:00", "room-02@20:00"]
    assert rows["confidence"] == ["0.900", "0.500"]
    assert rows["candidate 1"] == [
        "room-01@19:00 0.900 p(conflict)=0.05",
        "room-02@20:00 0.950 p(conflict)=0.80",
    ]
    assert rows["candidate 2"] == ["room-03@21:00 0.400", "room-01@19:00 0.900 p(conflict)=0.05"]
    assert rows["candidate 3"] == ["-", "room-03@21:00 0.400"]
    assert rows["policies"] == [
        "all allow",
        "planner-confidence-floor: require_review, risk-cap: deny",
    ]
    assert output.strip().endswith("the decisions differ")
    assert run(cli, *asked, "--version", "1").strip().endswith("same decision")

    monkeypatch.setenv("WARDEN_REPLAY", f"{STACK}:broken_replay")
    broken = run(cli, *asked, "--version", "2", code=1)
    assert broken == (
        f"error: WARDEN_REPLAY='{STACK}:broken_replay' returned no list of replayed decisions: "
        "0.decision.candidates: Field required\n"
    )
    monkeypatch.setenv("WARDEN_REPLAY", f"{STACK}")
    assert run(cli, *asked, "--version", "2", code=1) == (
        f"error: WARDEN_REPLAY='{STACK}': write it as module:callable\n"
    )
