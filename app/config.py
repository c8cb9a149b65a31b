"""Service settings: `WARDEN_*` environment variables over an optional `warden.toml`.

Precedence, highest first: explicit constructor arguments, environment variables,
`warden.toml` in the working directory (or the file named by `WARDEN_CONFIG`), defaults.
The defaults are the embedded single-machine set-up: everything under `./.warden/`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path(".warden")
# The data folder's own secrets, made on first use when none is configured.
SECRET_FILE = "secret.key"
FINGERPRINT_FILE = "fingerprint.key"
_KEY_ID_LABEL = "warden-key-id-v1"


def secret_key_id(name: str, secret: bytes) -> str:
    """The id of a shared secret (`server_secret`, `fingerprint_secret`): the first 16 hex
    characters of HMAC-SHA256 keyed by the secret over a fixed label and the name. It tells
    two secrets apart and reveals nothing of either. (The audit signing key's id is the one
    its heads carry: app/audit/heads.py `key_id`.)

    >>> secret_key_id("server_secret", b"s") == secret_key_id("server_secret", b"s")
    True
    """
    message = f"{_KEY_ID_LABEL}\n{name}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:16]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WARDEN_", extra="ignore")

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="Folder for the embedded database, MLflow store and server secret.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means a SQLite file `<data_dir>/warden.db`.",
    )
    mlflow_tracking_uri: str = Field(
        default="",
        description="MLflow tracking URI; empty means `sqlite:///<data_dir>/mlflow.db`.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    payload_limit_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="Largest accepted request body."
    )
    ingest_max_pending: int = Field(
        default=16,
        ge=1,
        description="OTLP export batches one process admits at once (being read, queued or "
        "stored); past it a batch is refused unread with 503 and `Retry-After`, which OTLP "
        "exporters honour. Bounds the memory and latency of ingest under overload.",
    )
    ingest_retry_after: int = Field(
        default=1,
        ge=0,
        description="Seconds a refused OTLP client is told to wait (`Retry-After`).",
    )
    secret_key: str = Field(
        default="",
        description=(
            "Server secret that keys the hashes of API keys. Empty means a random secret "
            "generated once and kept in `<data_dir>/secret.key`."
        ),
    )
    fingerprint_secret: str = Field(
        default="",
        description=(
            "Secret keying the fingerprints of inputs that the service records itself (the "
            "gateway, the demo, replay's check) — the SDK's `WARDEN_FINGERPRINT_SECRET`. Empty "
            "means a random secret generated once and kept in `<data_dir>/fingerprint.key`."
        ),
    )
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = Field(
        default="FULL",
        description="SQLite `synchronous` pragma; FULL makes an acknowledged batch durable.",
    )
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    lineage_interval: float = Field(
        default=10.0,
        ge=0,
        description="Seconds between lineage resolution rounds against MLflow; 0 turns it off.",
    )
    drift_tick: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between checks whether a project's scheduled drift job is due "
        "(each project sets its own interval); 0 turns scheduled drift jobs off.",
    )
    audit_checkpoint_interval: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between signed tree heads of each project's audit ledger "
        "(signed only when the ledger grew); 0 turns the signer off.",
    )
    audit_signing_key: Path | None = Field(
        default=None,
        description="Ed25519 private key (PKCS#8 PEM) that signs tree heads; empty means "
        "`<data_dir>/audit-signing.key`, generated on first use.",
    )
    experiment_results_interval: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between refreshes of running experiments' results (and their "
        "MLflow runs); 0 turns it off (results are then computed when an experiment is read).",
    )
    dashboard_rollup_interval: float = Field(
        default=5.0,
        ge=0,
        description="Seconds between rounds folding new requests into the dashboard's traffic "
        "rollups; 0 turns it off (the overview then reads the requests themselves).",
    )
    stack: str = Field(
        default="",
        description="`module:callable` of the stack `POST /v1/infer` runs; empty: no gateway.",
    )
    stack_project: str = Field(default="default", description="The project the gateway serves.")
    demo: str = Field(
        default="examples.booking.demo:run",
        description="`module:callable` `warden demo` runs (the contract: app/cli/demo.py).",
    )
    replay: str = Field(
        default="examples.booking.replay:replay",
        description="`module:callable` `warden replay` runs (the contract: app/cli/demo.py).",
    )
    policies_dir: Path | None = Field(
        default=None,
        description="Folder of the policy set served to SDKs; empty means the built-in set.",
    )
    db_pool_size: int = Field(default=8, ge=1)
    role: Literal["api", "worker", "all"] = Field(
        default="all",
        description="What this process does: `api` answers HTTP only, `worker` runs the "
        "background jobs (each led by one process of the deployment) and answers health and "
        "metrics only, `all` both (the embedded set-up). `warden serve --role` sets it.",
    )
    tensor_max_bytes: int = Field(
        default=4 * 1024 * 1024,
        gt=0,
        description="Largest sampled tensor `PUT /v1/tensors/{sha256}` stores (in the "
        "database, where every replica reads it); a larger one is refused with 413.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("WARDEN_CONFIG", "warden.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'warden.db'}"

    @property
    def resolved_mlflow_tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.data_dir / 'mlflow.db'}"

    def server_secret(self) -> bytes:
        """The secret keying API-key hashes; generated and kept on disk when not configured."""
        if self.secret_key:
            return self.secret_key.encode()
        return self.local_secret(SECRET_FILE)

    def fingerprint_key(self) -> bytes:
        """The secret keying input fingerprints; generated and kept on disk when not configured."""
        if self.fingerprint_secret:
            return self.fingerprint_secret.encode()
        return self.local_secret(FINGERPRINT_FILE)

    def existing_local_secret(self, name: str) -> bytes | None:
        """The data folder's own secret `<data_dir>/<name>` if made already; never makes it."""
        path = self.data_dir / name
        return path.read_text().strip().encode() if path.exists() else None

    def local_secret(self, name: str) -> bytes:
        """A random secret kept in `<data_dir>/<name>` (mode 0600), made on first use."""
        path = self.data_dir / name
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Written aside then hard-linked: two processes starting at once agree on one
            # secret, and no reader ever sees a half-written file.
            tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip().encode()


def get_settings() -> Settings:
    return Settings()
