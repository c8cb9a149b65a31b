"""Scores in the ledger and in exports: `score.recorded` events, the scores of the exported
requests as records, and both the live ledger (`warden audit verify`) and the bundle
(`warden verify`) still verify."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from app.audit.bundle import Scope, export_bundle
from app.audit.ledger import checkpoints
from collectors import conventions as wire
from tests import otlp
from tests.app.audit.bundle_data import members
from tests.app.cli.in_process import run
from tests.app.scores.scoring import requests, score_span, send
from tests.conftest import TEST_SECRET, LiveService


@pytest.fixture
def cli(live: LiveService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("WARDEN_DATA_DIR", str(live.settings.data_dir))
    monkeypatch.setenv("WARDEN_DATABASE_URL", live.settings.resolved_database_url)
    monkeypatch.setenv("WARDEN_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("WARDEN_CONFIG", str(tmp_path / "none.toml"))
    if live.settings.audit_signing_key:  # PostgreSQL: the deployment's shared key file
        monkeypatch.setenv("WARDEN_AUDIT_SIGNING_KEY", str(live.settings.audit_signing_key))
    else:
        monkeypatch.delenv("WARDEN_AUDIT_SIGNING_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def test_scores_are_exported_with_their_requests_and_everything_verifies(
    live: LiveService, cli: CliRunner, tmp_path: Path
) -> None:
    sender = live.client(live.key("shop", "ingest"))
    ids = otlp.Ids(31)
    first, second = requests(sender, ids, 2, **{wire.REQUEST_SUBJECT: "user-1"})
    [third] = requests(sender, ids, 1, **{wire.REQUEST_SUBJECT: "user-2"})
    over_otlp = score_span(ids, first, "plan_success", True)
    send(sender, [over_otlp])
    api = sender.post(
        f"/v1/requests/{second}/scores",
        json={"name": "correction", "value": True, "correction": {"action": "room-c"}},
    ).json()
    sender.post(f"/v1/requests/{third}/scores", json={"name": "rating", "value": 3})

    assert "verified shop" in run(cli, "audit", "verify", "--project", "shop")
    key = checkpoints.signing_key(live.settings)
    public = tmp_path / "warden.pub"
    public.write_text(run(cli, "audit", "public-key"))

    full = export_bundle(live.engine, Scope("shop"), tmp_path / "full.zip", key)
    files = members(full.path.read_bytes())
    scores = [orjson.loads(line) for line in files["records/scores.jsonl"].splitlines()]
    assert {(s["trace_id"], s["name"]) for s in scores} == {
        (first, "plan_success"), (second, "correction"), (third, "rating"),
    }  # fmt: skip
    by_key = {s["score_key"]: s for s in scores}
    assert by_key[api["key"]]["correction"] == {"action": "room-c"}
    assert f"{over_otlp.trace_id.hex()}:{over_otlp.span_id.hex()}" in by_key
    assert "records/scores.parquet" in files
    kinds = [
        orjson.loads(line)["event"]["kind"]
        for name, data in files.items()
        if name.startswith("ledger/events-")
        for line in data.splitlines()
    ]
    assert kinds.count("score.recorded") == 3
    assert "OK" in run(cli, "verify", str(full.path), "--public-key", str(public))

    # One subject's export takes the scores of that subject's requests only.
    one = export_bundle(live.engine, Scope("shop", subject="user-2"), tmp_path / "user-2.zip", key)
    files = members(one.path.read_bytes())
    scores = [orjson.loads(line) for line in files["records/scores.jsonl"].splitlines()]
    assert [s["trace_id"] for s in scores] == [third]
    assert "OK" in run(cli, "verify", str(one.path), "--public-key", str(public))
