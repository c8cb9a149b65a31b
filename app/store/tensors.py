"""Sampled full tensors, stored content-addressed (SHA-256) under the data folder, per project.

World-model state rows name a tensor by its digest (`tensor_sha256`); the SDK uploads the
bytes (a NumPy `.npy` file, no pickles) out of the request path. Writing is idempotent: the
same content lands at the same path, written to a temporary file and renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from app.errors import BadRequest, NotFound

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def _path(root: Path, project_id: int, digest: str) -> Path:
    if not _DIGEST.match(digest):
        raise BadRequest(
            "a tensor is named by the lowercase hex SHA-256 of its bytes (64 characters)"
        )
    return root / "tensors" / str(project_id) / digest[:2] / f"{digest}.npy"


def store_tensor(root: Path, project_id: int, digest: str, body: bytes) -> bool:
    """Store `body` under its digest; True when it was new. 400 if the digest does not match."""
    path = _path(root, project_id, digest)
    if hashlib.sha256(body).hexdigest() != digest:
        raise BadRequest("the body's SHA-256 does not match the digest in the URL")
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def load_tensor(root: Path, project_id: int, digest: str) -> bytes:
    path = _path(root, project_id, digest)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no tensor {digest} in this project") from None
