"""Drift references: what a model version's current traffic is compared with, built once.

- **Inputs**: by default the training dataset its MLflow run logged (context `training`),
  read through the dataset's own source (`mlflow.data`: a file, an HTTP URL, the run's
  artifacts on a tracking server) from the lineage snapshot Warden keeps, so it still loads
  after the registry forgot the run. Downloaded once per dataset digest into
  `<data_dir>/cache/datasets/` (only the columns traffic names). Without one, the version's
  own traffic reference window serves.
- **Latent states and decisions**: a window of the version's own traffic (by default the
  `reference_count` requests just before the current window; its first `reference_count`
  requests, or a configured time range, when the settings say so: see `app.drift.plan`); the
  training data holds no latent states or plans.

`app.drift.detection` keeps references and the detectors fitted on them (in `Built`) between
runs, so a scheduled job does not read or fit them again every run.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

from app.drift.windows import Bounds
from app.registry import lineage
from app.store.engine import read_connection
from app.store.tables import ModelVersion

log = logging.getLogger("warden.drift")

TRAINING = "training"


class ReferenceUnavailable(Exception):
    """A reference that could not be read (the job falls back, and says why)."""


def training_dataset(engine: Engine, project_id: int, name: str, version: str) -> dict[str, Any]:
    """The training dataset entry of the version's stored lineage ({} when none is known)."""
    with read_connection(engine) as conn:
        lineage = conn.execute(
            select(ModelVersion.lineage).where(
                ModelVersion.project_id == project_id,
                ModelVersion.name == name,
                ModelVersion.version == version,
            )
        ).scalar_one_or_none()
    datasets = (lineage or {}).get("datasets") or []
    for dataset in datasets:
        if dataset.get("context") == TRAINING:
            return dict(dataset)
    return dict(datasets[0]) if len(datasets) == 1 else {}


def _read_table(path: Path) -> pd.DataFrame:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        if len(files) != 1:
            raise ReferenceUnavailable(f"dataset source is a folder of {len(files)} files")
        path = files[0]
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in {".csv", ".txt"}:
        return pd.read_csv(path)
    if suffix in {".json", ".jsonl"}:
        return pd.read_json(path, lines=suffix == ".jsonl")
    raise ReferenceUnavailable(f"dataset source {path.name}: only parquet, csv and json are read")


class DatasetCache:
    """Training datasets by digest: on disk under `folder`, the newest few in memory."""

    def __init__(self, folder: Path, keep: int = 4) -> None:
        self.folder = folder
        self.keep = keep
        self._memory: OrderedDict[str, pd.DataFrame] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, dataset: dict[str, Any], columns: list[str]) -> pd.DataFrame:
        """The dataset's `columns` (those it has); raises ReferenceUnavailable when unreadable."""
        digest = str(dataset.get("digest") or "")
        if not digest:
            raise ReferenceUnavailable("the training dataset has no digest")
        with self._lock:
            frame = self._memory.get(digest)
            if frame is not None:
                self._memory.move_to_end(digest)
        if frame is None:
            frame = self._from_disk_or_source(digest, dataset)
            with self._lock:
                self._memory[digest] = frame
                while len(self._memory) > self.keep:
                    self._memory.popitem(last=False)
        present = [c for c in columns if c in frame.columns]
        return frame[present]

    def _from_disk_or_source(self, digest: str, dataset: dict[str, Any]) -> pd.DataFrame:
        cached = self.folder / f"{''.join(c for c in digest if c.isalnum())}.parquet"
        if cached.exists():
            return pd.read_parquet(cached)
        frame = read_source(dataset)
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")
        frame.to_parquet(partial, index=False)
        partial.replace(cached)  # whole or absent, even if the process dies mid-write
        return frame


def read_source(dataset: dict[str, Any]) -> pd.DataFrame:
    """Read a logged dataset through its MLflow dataset source."""
    lineage.ensure_mlflow()
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.exceptions import MlflowException

    source, source_type = dataset.get("source"), dataset.get("source_type")
    if not source or not source_type:
        raise ReferenceUnavailable("the training dataset names no source")
    try:
        json.loads(source)
        # Every file-like source (local, HTTP, artifacts) takes dst_path; the abstract
        # DatasetSource.load does not declare it.
        found: Any = get_dataset_source_from_json(source, source_type)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(found.load(dst_path=tmp))
            return _read_table(local)
    except (MlflowException, OSError, ValueError) as exc:
        raise ReferenceUnavailable(
            f"could not read the training dataset {dataset.get('name')!r} "
            f"({source_type} {source}): {exc}"
        ) from exc


class Built:
    """Objects costly to build again, by key: the `keep` most recently used."""

    def __init__(self, keep: int = 32) -> None:
        self.keep = keep
        self._items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Any | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.keep:
                self._items.popitem(last=False)


def reference_key(project_id: int, name: str, version: str, bounds: Bounds) -> tuple[Any, ...]:
    return (project_id, name, version, bounds.start, bounds.end)
