"""Train the world model once, register it in MLflow, and load it back by name and version.

`register_world_model` trains on simulator data and registers the result as a new version of
`booking-world-model`, with its training run (params, metrics), the training dataset
(`mlflow.log_input`, context `training`) and the alias `champion`. A version whose
`warden.config_hash` tag equals the hash of the training spec is reused instead of retrained.

The version holds the model twice: the `pytorch` flavor (the whole module, pickled, for
`mlflow.pytorch.load_model`) and, as extra files, `config.json` + `state_dict.pt`.
`load_world_model` rebuilds from the latter with `torch.load(weights_only=True)`, so loading
runs none of the artifact's code, and the result is a real `WorldModel` whose `encoder` and
`transition` submodules can be hooked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Telemetry off and logging synchronous before mlflow is imported: nothing may leave the machine.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
import mlflow.artifacts
import mlflow.pytorch
import mlflow.tracking
import torch
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .errors import RegistryError
from .sim import (
    ACTION_COLUMNS,
    SIM_VERSION,
    STATE_COLUMNS,
    TARGET_COLUMNS,
    generate_dataset,
)
from .world_model import (
    TrainConfig,
    WorldModel,
    WorldModelConfig,
    train_world_model,
)

DEFAULT_TRACKING_URI = "sqlite:///./.warden/mlflow.db"
DEFAULT_MODEL_NAME = "booking-world-model"
DEFAULT_EXPERIMENT = "booking-world-model"
CHAMPION = "champion"
CHALLENGER = "challenger"
CONFIG_HASH_TAG = "warden.config_hash"
_ARTIFACT = "world_model"
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@dataclass(frozen=True)
class TrainingSpec:
    """Everything that determines the trained weights; its hash is the registry's cache key."""

    n_samples: int = 20_000
    data_seed: int = 0
    shift: float = 0.0
    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def config_hash(self) -> str:
        """SHA-256 of the spec, the simulator's version and the feature layout.

        >>> TrainingSpec().config_hash() == TrainingSpec().config_hash()
        True
        >>> TrainingSpec(n_samples=10).config_hash() == TrainingSpec().config_hash()
        False
        """
        payload = {
            "spec": self.to_dict(),
            "sim_version": SIM_VERSION,
            "columns": [STATE_COLUMNS, ACTION_COLUMNS, TARGET_COLUMNS],
            "torch": torch.__version__.split("+")[0],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def params(self) -> dict[str, Any]:
        """Flat MLflow params: `data.*`, `model.*`, `train.*`."""
        flat: dict[str, Any] = {
            "data.n_samples": self.n_samples,
            "data.seed": self.data_seed,
            "data.shift": self.shift,
            "data.sim_version": SIM_VERSION,
        }
        flat.update({f"model.{k}": v for k, v in self.model.to_dict().items()})
        flat.update({f"train.{k}": v for k, v in self.train.to_dict().items()})
        return flat


# The demo's challenger: a quarter of the champion's rows, all drawn from shifted traffic
# (shift=1: larger groups, later hours, further ahead), and 4 epochs instead of 10. It
# ranks conflicts almost as well (validation AUC about 0.94 against 0.96) but, on the demo's
# unshifted traffic, fewer requested slots pass the planner's conflict cap: it books 18-20% of
# the demo's requests where the champion books 30-33% (examples/booking/README.md).
CHALLENGER_SPEC = TrainingSpec(n_samples=5_000, shift=1.0, train=TrainConfig(epochs=4))


@dataclass(frozen=True)
class RegisteredWorldModel:
    """A registered version; `reused` is True when the cache answered instead of training."""

    name: str
    version: str
    run_id: str
    config_hash: str
    reused: bool
    dataset_name: str
    dataset_digest: str

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass
class LoadedWorldModel:
    """A world model loaded from the registry, with the identity to report in telemetry."""

    model: WorldModel
    name: str
    version: str
    run_id: str
    tags: dict[str, str]


def _sqlite_path(tracking_uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


def default_artifact_location(tracking_uri: str) -> str | None:
    """`mlartifacts/` beside a SQLite store (as a file URI); None lets a server decide.

    >>> default_artifact_location("sqlite:////tmp/x/mlflow.db")
    'file:///tmp/x/mlartifacts'
    """
    db = _sqlite_path(tracking_uri)
    return (db.parent / "mlartifacts").resolve().as_uri() if db else None


def dataset_source_uri(artifact_uri: str, tracking_uri: str) -> str:
    """Where a run's dataset artifact can be read back from, as a URI MLflow's dataset
    sources resolve: a file URI on a local store, the server's artifact download URL
    (`mlflow-artifacts:` is a scheme only the MLflow client knows) on a tracking server.

    >>> dataset_source_uri("mlflow-artifacts:/1/abc/artifacts/d.parquet", "http://h:5000")
    'http://h:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/d.parquet'
    """
    scheme = "mlflow-artifacts:"
    if artifact_uri.startswith(scheme) and tracking_uri.startswith(("http://", "https://")):
        path = artifact_uri[len(scheme) :].lstrip("/")
        return f"{tracking_uri.rstrip('/')}/api/2.0/mlflow-artifacts/artifacts/{path}"
    return artifact_uri


@contextlib.contextmanager
def _tracking(tracking_uri: str) -> Iterator[MlflowClient]:
    """Point mlflow's fluent API at `tracking_uri` for the block, then restore what was there.

    `mlflow.pytorch.log_model` and `mlflow.log_input` only use the global URIs, and MLflow's
    setters also write MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI into the environment; all of
    it is put back, so the caller's own MLflow setup is untouched.
    """
    db = _sqlite_path(tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    saved_env = {name: os.environ.get(name) for name in _URI_VARIABLES}
    tracking_was_set = mlflow.tracking.is_tracking_uri_set()
    previous_tracking, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    finally:
        # None means "not set": MLflow then resolves its defaults (and the environment) again.
        registry_was_set = previous_registry != previous_tracking
        mlflow.set_tracking_uri(previous_tracking if tracking_was_set else None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(previous_registry if registry_was_set else None)  # type: ignore[arg-type]
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def find_cached_version(client: MlflowClient, name: str, config_hash: str) -> ModelVersion | None:
    """The newest READY version of `name` tagged with `config_hash`, if any."""
    versions = [
        v
        for v in client.search_model_versions(f"name='{name}'")
        if v.tags.get(CONFIG_HASH_TAG) == config_hash and v.status == "READY"
    ]
    return max(versions, key=lambda v: int(v.version), default=None)


def register_world_model(
    spec: TrainingSpec | None = None,
    tracking_uri: str = DEFAULT_TRACKING_URI,
    name: str = DEFAULT_MODEL_NAME,
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    artifact_location: str | None = None,
    alias: str = CHAMPION,
    force: bool = False,
) -> RegisteredWorldModel:
    """Train and register a world model, or reuse the version trained from the same spec.

    A new version gets `alias` (default `champion`). A reused version keeps the aliases it
    has; it only gets `alias` if no version holds it yet. `force` retrains regardless.

    >>> import tempfile
    >>> store = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
    >>> spec = TrainingSpec(n_samples=300, train=TrainConfig(epochs=1))
    >>> first = register_world_model(spec, store)  # doctest: +SKIP
    >>> register_world_model(spec, store).reused  # doctest: +SKIP
    True
    """
    spec = spec or TrainingSpec()
    config_hash = spec.config_hash()
    with _tracking(tracking_uri) as client:
        cached = None if force else find_cached_version(client, name, config_hash)
        if cached is not None:
            if not _has_alias(client, name, alias):
                client.set_registered_model_alias(name, alias, cached.version)
            return RegisteredWorldModel(
                name=name,
                version=str(cached.version),
                run_id=str(cached.run_id),
                config_hash=config_hash,
                reused=True,
                dataset_name=cached.tags.get("training.dataset.name", ""),
                dataset_digest=cached.tags.get("training.dataset.digest", ""),
            )
        experiment_id = _experiment(
            client, experiment, artifact_location or default_artifact_location(tracking_uri)
        )
        return _train_and_register(client, spec, config_hash, name, experiment_id, alias)


def register_challenger(
    tracking_uri: str = DEFAULT_TRACKING_URI,
    spec: TrainingSpec | None = None,
    name: str = DEFAULT_MODEL_NAME,
) -> RegisteredWorldModel:
    """Register the challenger (`CHALLENGER_SPEC` unless `spec` says otherwise) as another
    version of `name`, under the alias `challenger`; cached like the champion.

    >>> register_challenger("sqlite:///./.warden/mlflow.db").model_uri  # doctest: +SKIP
    'models:/booking-world-model/2'
    """
    return register_world_model(spec or CHALLENGER_SPEC, tracking_uri, name, alias=CHALLENGER)


def resolve_version(tracking_uri: str, model_uri: str) -> tuple[str, str]:
    """The (name, version) a `models:/name@alias` or `models:/name/version` URI names now.

    >>> resolve_version("sqlite:///./.warden/mlflow.db", "models:/booking-world-model@champion")
    ... # doctest: +SKIP
    ('booking-world-model', '1')
    """
    with _tracking(tracking_uri) as client:
        version = _resolve(client, tracking_uri, model_uri)
    return str(version.name), str(version.version)


def _has_alias(client: MlflowClient, name: str, alias: str) -> bool:
    try:
        client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return False
    return True


def _experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_location))


def _train_and_register(
    client: MlflowClient,
    spec: TrainingSpec,
    config_hash: str,
    name: str,
    experiment_id: str,
    alias: str,
) -> RegisteredWorldModel:
    df = generate_dataset(spec.n_samples, seed=spec.data_seed, shift=spec.shift)
    dataset_name = f"booking-sim-n{spec.n_samples}-seed{spec.data_seed}-shift{spec.shift:g}"
    with (
        mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{config_hash[:8]}") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.log_params(spec.params())
        mlflow.set_tags({CONFIG_HASH_TAG: config_hash, "warden.role": "world_model"})
        # The snapshot is stored with the run, so the dataset's source is the exact rows.
        snapshot = Path(tmp) / f"{dataset_name}.parquet"
        df.to_parquet(snapshot, index=False)
        mlflow.log_artifact(str(snapshot), artifact_path="dataset")
        source = dataset_source_uri(
            f"{run.info.artifact_uri}/dataset/{snapshot.name}", mlflow.get_tracking_uri()
        )
        with warnings.catch_warnings():
            # MLflow registers the local-file source under two schemes ("" and "file") and
            # warns that it picked one of the identical two; and it warns that integer columns
            # cannot hold missing values, which ours never have.
            warnings.simplefilter("ignore", UserWarning)
            dataset = from_pandas(df, source=source, name=dataset_name, targets="conflict")
            mlflow.log_input(dataset, context="training")

        result = train_world_model(df, spec.model, spec.train)
        mlflow.log_metrics(
            {
                "initial_val_loss": result.initial_val_loss,
                **result.metrics,
                "training_seconds": result.seconds,
            }
        )
        for epoch, loss in enumerate(result.train_losses):
            mlflow.log_metric("train_loss", loss, step=epoch)

        config_file = Path(tmp) / "config.json"
        config_file.write_text(json.dumps(spec.model.to_dict(), sort_keys=True))
        weights_file = Path(tmp) / "state_dict.pt"
        torch.save(result.model.state_dict(), weights_file)
        info = _log_model_quietly(
            result.model,
            name=_ARTIFACT,
            # The flavor's default (pt2, torch.export) flattens the module: hooks on `encoder`
            # and `transition` would never fire on what it loads back.
            serialization_format="pickle",
            # Given explicitly so MLflow does not start a subprocess to infer them.
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            extra_files=[str(config_file), str(weights_file)],
            registered_model_name=name,
            await_registration_for=0,
        )
    version = str(info.registered_model_version)
    version_tags = {
        CONFIG_HASH_TAG: config_hash,
        "warden.role": "world_model",
        "warden.stack": "booking-assistant",
        "training.dataset.name": dataset_name,
        "training.dataset.digest": dataset.digest,
        "training.n_samples": str(spec.n_samples),
        "training.shift": f"{spec.shift:g}",
        "training.seed": str(spec.data_seed),
        "val.conflict_auc": f"{result.metrics['val_conflict_auc']:.4f}",
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_tag(name, "warden.role", "world_model")
    client.set_registered_model_tag(name, "warden.stack", "booking-assistant")
    client.update_registered_model(
        name, description="Latent dynamics world model of the booking assistant (examples/booking)."
    )
    client.set_registered_model_alias(name, alias, version)
    return RegisteredWorldModel(
        name=name,
        version=version,
        run_id=run.info.run_id,
        config_hash=config_hash,
        reused=False,
        dataset_name=dataset_name,
        dataset_digest=dataset.digest,
    )


def _log_model_quietly(model: WorldModel, **kwargs: Any) -> Any:
    # The flavor warns that pickles can run code on load; load_world_model never unpickles.
    logger = logging.getLogger("mlflow.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return mlflow.pytorch.log_model(model, **kwargs)
    finally:
        logger.setLevel(level)


def _resolve(client: MlflowClient, tracking_uri: str, model_uri: str) -> ModelVersion:
    if not model_uri.startswith("models:/"):
        raise RegistryError(
            f"expected a registry URI like models:/{DEFAULT_MODEL_NAME}@{CHAMPION} or "
            f"models:/{DEFAULT_MODEL_NAME}/1, got {model_uri!r}"
        )
    ref = model_uri[len("models:/") :]
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        name, _, version = ref.rpartition("/")
        return client.get_model_version(name, version)
    except MlflowException as exc:
        raise RegistryError(
            f"{model_uri} is not in the registry at {tracking_uri}: {exc.message}. "
            "Run register_world_model() first, or check the name, version or alias."
        ) from exc


def load_world_model(
    tracking_uri: str = DEFAULT_TRACKING_URI,
    model_uri: str = f"models:/{DEFAULT_MODEL_NAME}@{CHAMPION}",
) -> LoadedWorldModel:
    """Load a registered version (by `@alias` or `/version`) as an eval-mode `WorldModel`.

    >>> loaded = load_world_model("sqlite:///./.warden/mlflow.db")  # doctest: +SKIP
    >>> loaded.name, loaded.version  # doctest: +SKIP
    ('booking-world-model', '1')
    """
    with _tracking(tracking_uri) as client:
        version = _resolve(client, tracking_uri, model_uri)
        with tempfile.TemporaryDirectory() as tmp:
            # Resolved here because MLflow resolves a models:/ URI against the global registry
            # URI, whatever registry_uri download_artifacts is given.
            source = client.get_model_version_download_uri(version.name, version.version)
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri
                )
            )
            extra = local / "extra_files"
            if not (extra / "config.json").exists():
                raise RegistryError(
                    f"{model_uri} has no extra_files/config.json: it was not registered by "
                    "register_world_model; load it with mlflow.pytorch.load_model instead"
                )
            config = WorldModelConfig(**json.loads((extra / "config.json").read_text()))
            state = torch.load(extra / "state_dict.pt", map_location="cpu", weights_only=True)
    model = WorldModel(config)
    model.load_state_dict(state)
    return LoadedWorldModel(
        model=model.eval(),
        name=str(version.name),
        version=str(version.version),
        run_id=str(version.run_id),
        tags=dict(version.tags),
    )
