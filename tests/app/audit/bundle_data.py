"""A store for the export tests, filled through the real ingest path and the live ledger.

`fill` ingests hybrid-stack requests a second apart (each appends its `request` ledger
event), three subjects taking turns; records the policy set in force; parks a review and has
a person approve it; erases one subject (`erasure` event); signs heads along the way.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, insert

from app.audit import erasure, heads, layout, ledger
from app.audit.bundle import ExportResult, Scope, export_bundle
from app.audit.ledger import checkpoints
from app.ingest.normalise import span_rows
from app.ingest.store import store_batch
from app.store.engine import write_transaction
from app.store.tables import Review
from app.tenancy import projects
from collectors import conventions as wire
from policies import BUILTIN, PolicySet
from tests import otlp
from tests.app.audit.conftest import VAULT

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND  # 2023-11-14T22:13:20Z
SUBJECTS = ("alice", "bob", "carol")


def at(offset_seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 / SECOND + offset_seconds, UTC)


@dataclass
class Store:
    engine: Engine
    project: str
    project_id: int
    key: Ed25519PrivateKey
    trace_ids: list[str]
    subjects: dict[str, str]  # trace id -> subject

    def export(self, path: Path, scope: Scope | None = None, **options: object) -> ExportResult:
        return export_bundle(
            self.engine, scope or Scope(self.project), path, self.key, **options  # type: ignore[arg-type]
        )


def ingest(engine: Engine, project_id: int, count: int, first: int = 0, seed: int = 3) -> list[str]:
    """`count` requests a second apart from T0 + `first` s; subjects take turns."""
    ids = otlp.Ids(seed + first)
    spans = []
    traces = []
    for i in range(first, first + count):
        extra: dict[str, object] = {wire.REQUEST_SUBJECT: SUBJECTS[i % len(SUBJECTS)]}
        if i % 4 == 3:
            extra[wire.model_version("world_model")] = "4"
            extra[wire.REQUEST_OUTCOME] = "denied"
        trace = otlp.hybrid_trace(ids, start=T0 + i * SECOND, **extra)
        traces.append(trace[0].trace_id.hex())
        spans += trace
    store_batch(engine, VAULT, project_id, span_rows(otlp.request(spans)))
    return traces


def fill(
    engine: Engine,
    key: Ed25519PrivateKey,
    project: str = "shop",
    requests: int = 12,
    erase: str | None = "bob",
) -> Store:
    with contextlib.suppress(Exception):
        projects.create_project(engine, project)
    project_id = projects.project_id(engine, project)
    ledger.record_policy_set(engine, PolicySet.load_dir(BUILTIN))
    half = requests // 2
    traces = ingest(engine, project_id, half)
    checkpoints.sign_heads(engine, key, project_id)
    traces += ingest(engine, project_id, requests - half, first=half)
    with write_transaction(engine) as conn:
        conn.execute(
            insert(Review).values(
                project_id=project_id, trace_id=traces[1], policy_id="risk-cap",
                status="approved", created_at=at(1), decided_at=at(2),
                decided_by="key:wdn_reviewer", note="checked by hand",
            )
        )  # fmt: skip
    if erase is not None:
        erasure.erase_subject(engine, project_id, erase, "test", "asked to be forgotten")
    checkpoints.sign_heads(engine, key, project_id)
    subjects = {t: SUBJECTS[i % len(SUBJECTS)] for i, t in enumerate(traces)}
    return Store(engine, project, project_id, key, traces, subjects)


def public_pem(key: Ed25519PrivateKey, folder: Path) -> Path:
    path = folder / "warden.pub"
    path.write_text(heads.public_key_pem(key))
    return path


# --- taking bundles apart and putting them back together, in memory --------------------------


def members(bundle: bytes) -> dict[str, bytes]:
    """The bundle's files, in the order the zip holds them."""
    with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def repack(files: dict[str, bytes], level: int = 0, order: list[str] | None = None) -> bytes:
    """A zip of `files` (stored, for speed, unless a deflate `level` is given)."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if level else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", method, compresslevel=level or None) as zf:
        for name in order or list(files):
            zf.writestr(name, files[name])
    return buffer.getvalue()


def resign(
    files: dict[str, bytes],
    key: Ed25519PrivateKey,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, bytes]:
    """What the holder of the signing key can do: re-list every file's digest, size and line
    count in the manifest (`edit` changes it further), and sign it again."""
    manifest = orjson.loads(files[layout.MANIFEST])
    for name, info in manifest["files"].items():
        if name in files:
            data = files[name]
            info["sha256"] = hashlib.sha256(data).hexdigest()
            info["bytes"] = len(data)
    if edit is not None:
        edit(manifest)
    data = orjson.dumps(
        manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
    )
    return {**files, layout.MANIFEST: data, layout.SIGNATURE: heads.sign_bytes(key, data)}


def lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)
