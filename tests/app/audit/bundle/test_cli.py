"""`warden export` and `warden verify`: one line per failure, one exit status per class."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from app.audit import heads, layout
from app.audit.bundle import Scope
from app.audit.verify import Failure
from app.cli import app
from tests.app.audit import bundle_data
from tests.app.audit.bundle_data import Store, lines, members, repack, resign
from tests.conftest import TEST_SECRET

WARDEN = str(Path(sys.executable).parent / "warden")


def _env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "WARDEN_DATA_DIR": str(tmp_path / "data"),
        "WARDEN_DATABASE_URL": database_url,
        "WARDEN_SECRET_KEY": TEST_SECRET,
        "WARDEN_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "COLUMNS": "200",
    }


def _warden(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WARDEN, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_export_then_verify_then_pin_as_an_auditor_would(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    env = _env(tmp_path, database_url)
    key_path = tmp_path / "data" / "audit-signing.key"
    key_path.parent.mkdir(parents=True)
    key = heads.generate_key()
    heads.save_private_key(key, key_path)
    bundle_data.fill(engine, key)
    public = bundle_data.public_pem(key, tmp_path)
    exported = _warden(env, "export", "--project", "shop", "--out", str(tmp_path / "q.zip"))
    assert exported.returncode == 0, exported.stderr
    assert "12 requests" in exported.stdout and "full scope" in exported.stdout
    assert "logged to MLflow as run" in exported.stdout
    head = tmp_path / "HEAD.json"
    checked = _warden(
        env, "verify", str(tmp_path / "q.zip"), "--public-key", str(public),
        "--save-head", str(head),
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("OK (operator-signed only): signed by key ")
    assert heads.head_from_json(json.loads(head.read_text())).tree_size > 0
    # The export itself is in the ledger now; the next bundle extends the pinned head.
    again = _warden(env, "export", "--project", "shop", "--subject", "alice", "--no-mlflow",
                    "--out", str(tmp_path / "alice.zip"))  # fmt: skip
    assert again.returncode == 0, again.stderr
    pinned = _warden(
        env, "verify", str(tmp_path / "alice.zip"), "--public-key", str(public), "--pin", str(head)
    )
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.startswith("OK: signed by key ")
    files = members((tmp_path / "alice.zip").read_bytes())
    kinds = [orjson.loads(x)["event"]["kind"] for x in files[layout.events_part(1)].splitlines()]
    assert "export.produced" not in kinds  # not the subject's, not in a subject's export
    full = members((tmp_path / "q.zip").read_bytes())
    assert orjson.loads(full[layout.MANIFEST])["counts"]["requests"] == 12


@pytest.fixture
def signed(engine: Engine, tmp_path: Path) -> tuple[Store, bytes, bytes, Path]:
    store = bundle_data.fill(engine, heads.generate_key(), requests=6)
    full = store.export(tmp_path / "full.zip").path.read_bytes()
    partial = store.export(tmp_path / "a.zip", Scope("shop", subject="alice")).path.read_bytes()
    return store, full, partial, bundle_data.public_pem(store.key, tmp_path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_each_failure_has_its_exit_status_and_one_line(
    signed: tuple[Store, bytes, bytes, Path], tmp_path: Path
) -> None:
    store, full, partial, public = signed
    runner = CliRunner()
    files, parts = members(full), members(partial)
    events_name = layout.events_part(1)
    events = lines(files[events_name])
    other = heads.generate_key()

    def forged_head(manifest: dict[str, object]) -> None:
        anchor = heads.head_from_json(manifest["ledger"]["anchor"])  # type: ignore[index]
        manifest["ledger"]["anchor"] = heads.head_to_json(  # type: ignore[index]
            heads.sign_head(other, "shop", anchor.tree_size, anchor.root_hash, anchor.signed_at)
        )

    def bad_proof() -> dict[str, bytes]:
        rows = lines(parts[layout.PROOFS])
        proof = orjson.loads(rows[0])
        proof["leaf_index"] += 1
        rows[0] = orjson.dumps(proof, option=orjson.OPT_SORT_KEYS) + b"\n"
        return resign({**parts, layout.PROOFS: b"".join(rows)}, store.key)

    edited = events[4].replace(b'"status":"unset"', b'"status":"unsez"', 1)
    assert edited != events[4]
    cases = {
        "ok": (repack(files), Failure.OK, "OK (operator-signed only)"),
        "signature": (
            repack({**files, layout.SIGNATURE: bytes(64)}), Failure.MANIFEST_SIGNATURE,
            "FAILED [10 manifest signature] manifest.json: manifest.sig is not a signature",
        ),
        "digest": (
            repack({**files, events_name: b"".join([*events[:4], edited, *events[5:]])}),
            Failure.FILE_DIGEST,
            "FAILED [11 file digest] ledger/events-00001.jsonl line 5: its SHA-256 is not the "
            "manifest's; first bad record: the event does not hash to its hash",
        ),
        "record": (
            repack(resign({**files, events_name: b"".join([*events[:4], edited, *events[5:]])},
                          store.key)),
            Failure.RECORD_HASH,
            "FAILED [12 record hash] ledger/events-00001.jsonl line 5: the event does not hash",
        ),
        "chain": (
            repack(resign({**files, events_name: b"".join(events[:4] + events[5:])}, store.key)),
            Failure.CHAIN,
            "FAILED [13 chain] ledger/events-00001.jsonl line 5 (seq 6): seq 5 is missing (found "
            "seq 6)",
        ),
        "inclusion": (
            repack(bad_proof()), Failure.INCLUSION,
            "FAILED [14 inclusion proof] ledger/proofs.jsonl line 1",
        ),
        "head": (
            repack(resign(files, store.key, forged_head)), Failure.HEAD_SIGNATURE,
            "FAILED [15 head signature] manifest.json: the head of ",
        ),
        "counts": (
            repack(resign(files, store.key, lambda m: m["counts"].update(erased_requests=0))),
            Failure.COUNTS,
            "FAILED [16 counts] manifest.json: the manifest counts 0 erased_requests, the bundle "
            "holds 2",
        ),
    }  # fmt: skip
    for name, (bundle, code, message) in cases.items():
        path = tmp_path / f"{name}.zip"
        path.write_bytes(bundle)
        result = runner.invoke(app, ["verify", str(path), "--public-key", str(public)])
        assert result.exit_code == code, (name, result.output)
        assert result.output.startswith(message), (name, result.output)
        if code:
            assert result.output.count("\n") == 1, (name, result.output)
    # 17: a pinned head the log does not extend (signed, but of another history).
    stranger = heads.sign_head(store.key, "shop", 3, bytes(32), bundle_data.at(0))
    pin = tmp_path / "HEAD.json"
    pin.write_text(json.dumps(heads.head_to_json(stranger)))
    result = runner.invoke(
        app, ["verify", str(tmp_path / "ok.zip"), "--public-key", str(public), "--pin", str(pin)]
    )
    assert result.exit_code == Failure.CONSISTENCY
    assert result.output.startswith("FAILED [17 consistency] the log was rewritten: its first 3")
    # 2: usage.
    (tmp_path / "not-a-key.pem").write_text("not a key\n")
    for args in (
        ["verify", str(tmp_path / "missing.zip"), "--public-key", str(public)],
        ["verify", str(tmp_path / "ok.zip"), "--public-key", str(tmp_path / "not-a-key.pem")],
        ["verify", str(tmp_path / "ok.zip"), "--public-key", str(public), "--pin", str(public)],
        ["verify", str(tmp_path / "ok.zip")],
    ):
        assert runner.invoke(app, args).exit_code == Failure.USAGE
    # And a key the bundle was not signed with is a signature failure, never a pass.
    stranger_pem = tmp_path / "other.pub"
    stranger_pem.write_text(heads.public_key_pem(other))
    result = runner.invoke(app, ["verify", str(tmp_path / "ok.zip"), "--public-key",
                                 str(stranger_pem)])  # fmt: skip
    assert result.exit_code == Failure.MANIFEST_SIGNATURE
