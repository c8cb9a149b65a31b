"""Sampled full tensors, stored content-addressed (SHA-256) per project in the `tensors` table.

World-model state rows name a tensor by its digest (`tensor_sha256`); the SDK uploads the
bytes (a NumPy `.npy` file, no pickles) out of the request path. They live in the database,
not on the disk of the replica that received them, so every process of a deployment serves
what any one stored. Sampled tensors are small by design: one over `tensor_max_bytes`
(WARDEN_TENSOR_MAX_BYTES) is refused with 413. Writing is idempotent: the same content under
the same digest is one row (insert on conflict do nothing).

Tensors stored by releases before this one are files under the data folder,
`<data_dir>/tensors/<project>/<xx>/<sha>.npy`; a read that finds no row falls back to that
file, so they stay readable on the process that holds them. Nothing else touches tensors:
retention and erasure leave them alone (they carry no subject), and deleting a project
deletes its rows.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from sqlalchemy import Engine, Table, select

from app.errors import BadRequest, NotFound, PayloadTooLarge
from app.store.dialect import insert_on_conflict
from app.store.engine import read_connection, write_transaction
from app.store.tables import Tensor

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
TABLE: Table = Tensor.__table__  # type: ignore[assignment]


def _check_digest(digest: str) -> None:
    if not _DIGEST.match(digest):
        raise BadRequest(
            "a tensor is named by the lowercase hex SHA-256 of its bytes (64 characters)"
        )


def too_large(size: int | str, max_bytes: int) -> PayloadTooLarge:
    """The 413 for a tensor over the limit, naming the setting that raises it."""
    return PayloadTooLarge(
        f"a tensor of {size} bytes is over the limit of {max_bytes} bytes "
        "(WARDEN_TENSOR_MAX_BYTES): sample smaller tensors, or raise the setting"
    )


def legacy_path(root: Path, project_id: int, digest: str) -> Path:
    """Where a release before tensors moved to the database kept this tensor."""
    _check_digest(digest)
    return root / "tensors" / str(project_id) / digest[:2] / f"{digest}.npy"


def store_tensor(
    engine: Engine, project_id: int, digest: str, body: bytes, max_bytes: int
) -> bool:
    """Store `body` under its digest; True when it was new.

    400 if the digest is malformed or does not match the body, 413 over `max_bytes`.
    """
    _check_digest(digest)
    if len(body) > max_bytes:
        raise too_large(len(body), max_bytes)
    if hashlib.sha256(body).hexdigest() != digest:
        raise BadRequest("the body's SHA-256 does not match the digest in the URL")
    with write_transaction(engine) as conn:
        stmt = insert_on_conflict(conn, TABLE, ["project_id", "sha256"]).values(
            project_id=project_id, sha256=digest, body=body, size=len(body)
        )
        # RETURNING, not rowcount: the one both drivers report for a skipped row.
        return conn.execute(stmt.returning(TABLE.c.sha256)).first() is not None


def load_tensor(engine: Engine, root: Path, project_id: int, digest: str) -> bytes:
    """The tensor's bytes: from the database, else from the legacy file under `root`;
    404 when neither has it (or it belongs to another project)."""
    _check_digest(digest)
    with read_connection(engine) as conn:
        body = conn.execute(
            select(Tensor.body).where(Tensor.project_id == project_id, Tensor.sha256 == digest)
        ).scalar()
    if body is not None:
        return bytes(body)
    try:
        return legacy_path(root, project_id, digest).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no tensor {digest} in this project") from None
