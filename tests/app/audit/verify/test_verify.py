"""The offline verifier on bundles of many parts: pins inside a part, the same first problem
with worker processes as without, files read a block at a time; and that it needs neither
the database nor the service."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from app.audit import heads, layout, ledger, merkle
from app.audit.verify import Failure, plain, verify_bundle
from app.audit.verify import members as members_module
from tests.app.audit import bundle_data
from tests.app.audit.bundle_data import Store, at, members

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture
def store(engine: Engine) -> Store:
    return bundle_data.fill(engine, heads.generate_key())


def test_a_pin_inside_a_part_is_checked_against_the_events(store: Store, tmp_path: Path) -> None:
    """The root of a pinned size is rebuilt from the parts' subtrees and one part's leaves."""
    with store.engine.connect() as conn:
        rows = list(ledger.iter_events(conn, store.project_id))
    tree = merkle.MerkleTree(merkle.leaf_hash(bytes(r.hash)) for r in rows)
    bundle = store.export(tmp_path / "parts.zip", part_events=4).path
    key = [store.key.public_key()]
    for size in range(1, len(rows) + 1):
        pin = heads.sign_head(store.key, store.project, size, tree.root(size), at(0))
        assert verify_bundle(bundle, key, pin).ok, size
        forged = heads.sign_head(store.key, store.project, size, tree.root(size - 1), at(0))
        assert verify_bundle(bundle, key, forged).exit_code == Failure.CONSISTENCY, size


def test_the_first_bad_record_is_the_same_with_workers(store: Store, tmp_path: Path) -> None:
    """Problems in two parts: the earlier part's is reported, whichever process finds first."""
    files = members(store.export(tmp_path / "parts.zip", part_events=4).path.read_bytes())
    second, third = layout.events_part(2), layout.events_part(3)
    rows = bundle_data.lines(files[third])
    rows[1] = rows[1].replace(b'"kind":"request"', b'"kind":"requesT"', 1)
    files[third] = b"".join(rows)
    rows = bundle_data.lines(files[second])
    files[second] = b"".join(rows[:2] + rows[3:])
    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(bundle_data.repack(bundle_data.resign(files, store.key)))
    key = [store.key.public_key()]
    here, workers = verify_bundle(tampered, key), verify_bundle(tampered, key, workers=2)
    assert here.summary() == workers.summary() == (
        f"FAILED [13 chain] {second} line 3 (seq 8): seq 7 is missing (found seq 8)"
    )


def test_big_files_are_read_a_block_at_a_time(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The way the files of a bundle of millions of records are read, on a small one: every
    file streamed, in blocks small enough that lines span them and that a Parquet footer is
    not in the last two read, and large enough that it is."""
    key = [store.key.public_key()]
    files = members(store.export(tmp_path / "parts.zip", part_events=4).path.read_bytes())
    monkeypatch.setattr(plain, "IN_MEMORY", 0)
    for block in (64, 1 << 20):
        monkeypatch.setattr(members_module, "BLOCK", block)
        monkeypatch.setattr(members_module, "INFLATE_IN", block)
        for level in (0, 1):
            verdict = verify_bundle(bundle_data.repack(files, level=level), key)
            assert verdict.ok, (block, level, verdict.summary())
            assert verdict.records == 12

        def miscount(manifest: dict[str, object]) -> None:
            manifest["files"]["records/requests.parquet"]["records"] = 11  # type: ignore[index]

        wrong = bundle_data.repack(bundle_data.resign(files, store.key, miscount))
        assert verify_bundle(wrong, key).summary() == (
            "FAILED [16 counts] records/requests.parquet: the manifest says 11 records, the file "
            "holds 12"
        )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_verifier_needs_neither_the_database_nor_the_service(
    store: Store, tmp_path: Path
) -> None:
    """A fresh interpreter verifies a bundle without importing SQLAlchemy, the store or the
    service: the offline verifier runs where none of them is installed."""
    bundle = store.export(tmp_path / "bundle.zip", part_events=4).path
    pem = bundle_data.public_pem(store.key, tmp_path)
    script = (
        "import sys\n"
        "from app.audit import heads\n"
        "from app.audit.verify import verify_bundle\n"
        f"key = heads.load_public_key({str(pem)!r})\n"
        f"verdict = verify_bundle({str(bundle)!r}, [key], workers=0)\n"
        "print(verdict.summary())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'fastapi')\n"
        "             or m == 'app.main' or m.startswith(('app.store', 'app.api'))))\n"
    )
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": path}, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary, imported = done.stdout.splitlines()
    assert summary.startswith("OK (operator-signed only)"), summary
    assert imported == "[]"
