"""`PUT`/`GET /v1/tensors/{sha256}`: stored in the database, so every replica serves them."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, select

from app.config import Settings
from app.store.tables import Tensor
from app.store.tensors import legacy_path
from app.tenancy import projects
from tests.conftest import LiveService, running


def _npy(values: list[float]) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values, dtype=np.float32), allow_pickle=False)
    body = buffer.getvalue()
    return body, hashlib.sha256(body).hexdigest()


def _replica(settings: Settings, tmp_path: Path, name: str, **changes: object) -> Settings:
    """Another process of the deployment: same database, a data folder of its own."""
    return settings.model_copy(update={"data_dir": tmp_path / name, **changes})


def test_a_tensor_stored_through_one_replica_is_read_through_another(
    live: LiveService, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    body, digest = _npy([0.5, 1.5, 2.5])
    with live.client(live.key("shop", "ingest")) as client:
        assert client.put(f"/v1/tensors/{digest}", content=body).status_code == 201
        assert client.put(f"/v1/tensors/{digest}", content=body).status_code == 200  # idempotent
        mismatch = client.put(f"/v1/tensors/{'a' * 64}", content=body)
        assert mismatch.status_code == 400 and "does not match" in mismatch.text
        assert client.put("/v1/tensors/not-a-digest", content=body).status_code == 400
    reader = live.key("shop", "read")
    with running(_replica(settings, tmp_path, "replica-b"), engine) as other:
        with other.client(reader) as client:
            got = client.get(f"/v1/tensors/{digest}")
            assert got.status_code == 200, got.text
            assert got.headers["content-type"] == "application/octet-stream"
            assert got.content == body
            assert client.get(f"/v1/tensors/{'0' * 64}").status_code == 404
        with other.client(live.key("other", "read")) as stranger:  # another project's reader
            assert stranger.get(f"/v1/tensors/{digest}").status_code == 404
    assert np.allclose(np.load(io.BytesIO(got.content)), [0.5, 1.5, 2.5])
    # One row, and no file on either replica's disk.
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Tensor)).scalar() == 1
    assert not (settings.data_dir / "tensors").exists()
    assert not (tmp_path / "replica-b" / "tensors").exists()


def test_a_tensor_over_the_limit_is_refused_with_413_naming_the_setting(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    small, small_digest = _npy([1.0])
    large, large_digest = _npy([float(i) for i in range(64)])
    limit = len(large) - 1
    assert len(small) <= limit
    with running(_replica(settings, tmp_path, "small", tensor_max_bytes=limit), engine) as live:
        with live.client(live.key("shop", "ingest")) as client:
            refused = client.put(f"/v1/tensors/{large_digest}", content=large)
            assert refused.status_code == 413, refused.text
            assert "WARDEN_TENSOR_MAX_BYTES" in refused.json()["detail"]
            assert str(limit) in refused.json()["detail"]
            assert client.put(f"/v1/tensors/{small_digest}", content=small).status_code == 201
        with live.client(live.key("shop", "read")) as client:
            assert client.get(f"/v1/tensors/{large_digest}").status_code == 404


def test_a_tensor_stored_as_a_file_by_an_earlier_release_is_still_served(
    live: LiveService, settings: Settings, engine: Engine
) -> None:
    reader = live.key("shop", "read")
    body, digest = _npy([3.0, 4.0])
    legacy = legacy_path(settings.data_dir, projects.project_id(engine, "shop"), digest)
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(body)
    with live.client(reader) as client:
        assert client.get(f"/v1/tensors/{digest}").content == body
    with live.client(live.key("other", "read")) as stranger:
        assert stranger.get(f"/v1/tensors/{digest}").status_code == 404
