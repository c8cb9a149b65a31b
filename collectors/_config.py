"""SDK settings: explicit arguments first, then `WARDEN_*` environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from collectors.errors import ConfigurationError

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Config:
    endpoint: str
    api_key: str | None
    project: str | None
    fingerprint_secret: bytes
    fingerprint_key_id: str
    service_name: str
    spool_dir: Path
    spool_max_bytes: int
    queue_size: int
    fail_closed: bool
    export_timeout: float
    max_batch_spans: int
    flush_interval: float
    spool_write_timeout: float
    policies: str | None
    # Shadow runs waiting for the shadow worker (collectors.shadow); beyond it they are dropped.
    shadow_queue: int = 64

    @property
    def traces_url(self) -> str:
        base = self.endpoint.rstrip("/")
        return base if base.endswith("/v1/traces") else f"{base}/v1/traces"

    @property
    def bundle_url(self) -> str:
        return self.traces_url[: -len("/v1/traces")] + "/v1/policies/bundle"

    @property
    def tensors_url(self) -> str:
        return self.traces_url[: -len("/v1/traces")] + "/v1/tensors"


def resolve(
    endpoint: str | None = None,
    api_key: str | None = None,
    project: str | None = None,
    fingerprint_secret: str | bytes | None = None,
    fingerprint_key_id: str | None = None,
    service_name: str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    spool_max_bytes: int | None = None,
    queue_size: int | None = None,
    fail_closed: bool | None = None,
    export_timeout: float | None = None,
    policies: str | os.PathLike[str] | None = None,
    shadow_queue: int | None = None,
) -> Config:
    secret = fingerprint_secret or _env("WARDEN_FINGERPRINT_SECRET")
    if not secret:
        raise ConfigurationError(
            "no fingerprint secret: pass fingerprint_secret= to collectors.init() or set "
            "WARDEN_FINGERPRINT_SECRET (a long random string, the same for every process of "
            "the project)"
        )
    if isinstance(secret, str):
        secret = secret.encode()
    spool = Path(spool_dir or _env("WARDEN_SPOOL_DIR") or Path(".warden") / "spool")
    config = Config(
        endpoint=endpoint or _env("WARDEN_ENDPOINT") or DEFAULT_ENDPOINT,
        api_key=api_key or _env("WARDEN_API_KEY"),
        project=project or _env("WARDEN_PROJECT"),
        fingerprint_secret=secret,
        fingerprint_key_id=fingerprint_key_id or _env("WARDEN_FINGERPRINT_KEY_ID") or "k1",
        service_name=service_name
        or _env("WARDEN_SERVICE_NAME")
        or _env("OTEL_SERVICE_NAME")
        or "hybrid-stack",
        spool_dir=spool,
        spool_max_bytes=spool_max_bytes or int(_env("WARDEN_SPOOL_MAX_BYTES") or 256 << 20),
        queue_size=queue_size or int(_env("WARDEN_QUEUE_SIZE") or 4096),
        fail_closed=fail_closed if fail_closed is not None else _flag(_env("WARDEN_FAIL_CLOSED")),
        export_timeout=export_timeout or float(_env("WARDEN_EXPORT_TIMEOUT") or 10.0),
        max_batch_spans=512,
        flush_interval=0.2,
        spool_write_timeout=0.1,
        policies=str(policies) if policies else _env("WARDEN_POLICIES"),
        shadow_queue=shadow_queue or int(_env("WARDEN_SHADOW_QUEUE") or 64),
    )
    if not config.endpoint.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"endpoint {config.endpoint!r} must start with http:// or https://"
        )
    return config
