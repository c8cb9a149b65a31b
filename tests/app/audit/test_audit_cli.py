"""`warden audit`, `warden erase`, `warden retention` and `warden hold` on a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from app.audit.ledger.verify import Failure
from app.cli import app
from app.config import Settings
from app.tenancy import projects
from collectors import conventions as wire
from tests import otlp
from tests.app.audit.conftest import drop_triggers, ingest, project
from tests.app.cli.in_process import run
from tests.conftest import TEST_SECRET


@pytest.fixture
def cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> CliRunner:
    monkeypatch.setenv("WARDEN_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("WARDEN_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("WARDEN_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("WARDEN_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("WARDEN_AUDIT_SIGNING_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def test_verify_checkpoint_head_and_exit_codes(
    cli: CliRunner, engine: Engine, tmp_path: Path
) -> None:
    pid = project(engine, "shop")
    projects.create_key(engine, TEST_SECRET.encode(), "shop", ["ingest"])
    ingest(engine, pid, otlp.hybrid_trace(otlp.Ids(41)))

    assert "signed shop at size 2" in run(cli, "audit", "checkpoint")
    assert "nothing to sign" in run(cli, "audit", "checkpoint", "--project", "shop")
    pin = tmp_path / "HEAD.json"
    pin.write_text(run(cli, "audit", "head", "--project", "shop"))
    assert json.loads(pin.read_text())["tree_size"] == 2
    assert "BEGIN PUBLIC KEY" in run(cli, "audit", "public-key")
    ingest(engine, pid, otlp.hybrid_trace(otlp.Ids(42)))
    run(cli, "audit", "checkpoint")
    assert "verified shop: 3 events, 2 signed heads" in run(cli, "audit", "verify")
    assert "extends the pinned head of size 2" in run(cli, "audit", "verify", "--pin", str(pin))

    # Heads signed by a key the verifier does not trust.
    other = Settings(data_dir=tmp_path / "elsewhere")
    cli_env = {"WARDEN_DATA_DIR": str(other.data_dir)}
    result = cli.invoke(app, ["audit", "verify"], env=cli_env)
    assert result.exit_code == Failure.UNKNOWN_KEY, result.stdout + result.stderr
    public = tmp_path / "warden.pub"
    public.write_text(run(cli, "audit", "public-key"))
    result = cli.invoke(app, ["audit", "verify", "--public-key", str(public)], env=cli_env)
    assert result.exit_code == 0, result.stdout + result.stderr

    # An attacker edits an event: exit 10, naming it.
    with engine.begin() as conn:
        drop_triggers(conn)
        conn.exec_driver_sql("UPDATE audit_events SET kind = 'key.revoked' WHERE seq = 2")
    output = run(cli, "audit", "verify", code=Failure.HASH_MISMATCH)
    assert "hash_mismatch" in output and "event seq 2" in output
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_events SET kind = 'request' WHERE seq = 2")
        # ... or cuts the tail a signed head covers: exit 22.
        conn.exec_driver_sql("DELETE FROM audit_events WHERE seq = 3")
    output = run(cli, "audit", "verify", "--project", "shop", code=Failure.TRUNCATED)
    assert "covers 3" in output
    run(cli, "audit", "verify", "--pin", str(pin), code=Failure.TRUNCATED)


def test_erase_retention_and_hold_commands(cli: CliRunner, engine: Engine) -> None:
    pid = project(engine, "shop")
    spans = otlp.hybrid_trace(otlp.Ids(43), **{
        wire.REQUEST_SUBJECT: "erin", wire.REQUEST_INPUT: '{"text":"hi"}'})  # fmt: skip
    ingest(engine, pid, spans)
    trace = spans[0].trace_id.hex()
    output = run(cli, "hold", "place", "--project", "shop", "--subject", "erin",
                 "--reason", "case 9")  # fmt: skip
    assert "placed legal hold 1 (subject)" in output
    assert "case 9" in run(cli, "hold", "list", "--project", "shop")
    assert "legal hold 1" in run(cli, "erase", "--subject", "erin", "--project", "shop", code=1)
    run(cli, "hold", "release", "1", "--project", "shop")
    output = run(cli, "erase", "--subject", "erin", "--project", "shop", "--reason", "Art. 17")
    assert "1 retained inputs unreadable" in output
    replay = ["replay", trace, "--model", "booking-world-model", "--version", "4"]
    output = run(cli, *replay, "--project", "shop", code=2)
    assert "input was erased" in output

    output = run(cli, "retention", "set", "--project", "shop", "--days", "30", "--high-risk",
                 code=1)  # fmt: skip
    assert "six months" in output and "Art. 19" in output
    run(cli, "retention", "set", "--project", "shop", "--days", "200", "--high-risk")
    assert "kept 200 days; high risk: True" in run(cli, "retention", "show", "--project", "shop")
    assert "shop: before" in run(cli, "retention", "apply")
    assert "verified shop" in run(cli, "audit", "verify")
