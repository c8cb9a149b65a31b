"""docker-compose.yml and the Collector's config cannot run here (no Docker engine): check what
they say instead — the services, how they are wired, the Collector's pipeline and queue, the
healthchecks and the start order."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from sqlalchemy.engine import URL, make_url
from typer.testing import CliRunner

from app.cli import app as warden_cli
from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
COLLECTOR = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
SETTINGS = {f"WARDEN_{name.upper()}" for name in Settings.model_fields}
SECRETS_ENV = "deploy/secrets/warden.env"


def _resolved(value: str) -> str:
    """A value as compose would pass it, with every required or defaulted variable given."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", value)
    return re.sub(r"\$\{(\w+):\?[^}]*\}", r"<\1>", value)


def _environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    pairs = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
    return {name: _resolved(str(value)) for name, value in pairs}


def _command(service: str) -> list[str]:
    command = SERVICES[service]["command"]
    words = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    return [_resolved(word) for word in words]


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _role_services(role: str) -> list[str]:
    serving = [
        name
        for name, service in SERVICES.items()
        if "command" in service and _command(name)[:2] == ["warden", "serve"]
    ]
    return [name for name in serving if _option(_command(name), "--role") == role]


def _warden_services() -> list[str]:
    return _role_services("api") + _role_services("worker")


def _postgres_url(url: str) -> URL:
    parsed = make_url(url)
    pg = _environment("postgres")
    assert parsed.host == "postgres" and parsed.port == 5432
    assert parsed.username == pg["POSTGRES_USER"]
    assert parsed.password == pg["POSTGRES_PASSWORD"]
    return parsed


def _exporter() -> tuple[str, dict[str, Any]]:
    (name,) = COLLECTOR["service"]["pipelines"]["traces"]["exporters"]
    return name, COLLECTOR["exporters"][name]


def test_the_stack_has_every_part() -> None:
    assert {"postgres", "minio", "minio-bucket", "mlflow", "collector"} <= set(SERVICES)
    assert len(_role_services("api")) >= 2
    assert len(_role_services("worker")) == 1
    for name in _warden_services():
        assert SERVICES[name]["image"] == "warden:latest"
        assert _option(_command(name), "--host") == "0.0.0.0"
        assert _option(_command(name), "--port") == "8000"


def test_warden_runs_against_the_postgres_service_and_the_tracking_server() -> None:
    for name in _warden_services():
        env = _environment(name)
        url = _postgres_url(env["WARDEN_DATABASE_URL"])
        assert url.drivername == "postgresql+psycopg"
        assert url.database == _environment("postgres")["POSTGRES_DB"]
        tracking = urlsplit(env["WARDEN_MLFLOW_TRACKING_URI"])
        assert (tracking.scheme, tracking.hostname) == ("http", "mlflow")
        assert _option(_command("mlflow"), "--port") == str(tracking.port)
        assert f"{tracking.hostname}:{tracking.port}" in _option(
            _command("mlflow"), "--allowed-hosts"
        ).split(",")
        # Artifacts are proxied by the tracking server: Warden holds no S3 credentials.
        assert not any(variable.startswith("AWS_") for variable in env)


def test_every_warden_variable_in_compose_is_a_real_setting() -> None:
    for name in SERVICES:
        for variable in _environment(name):
            if variable.startswith("WARDEN_"):
                assert variable in SETTINGS, f"{name}: {variable} is not a Warden setting"


def test_every_warden_process_shares_the_secrets_of_one_env_file() -> None:
    assert (ROOT / "deploy" / ".gitignore").read_text().splitlines()[-1] == "secrets/"
    assert "deploy/secrets" in (ROOT / ".dockerignore").read_text().splitlines()
    for name in _warden_services():
        service = SERVICES[name]
        # Compose refuses to start without the file: no process ever makes secrets of its own.
        assert service["env_file"] == [{"path": SECRETS_ENV, "required": True}]
        env = _environment(name)
        assert "WARDEN_SECRET_KEY" not in env and "WARDEN_FINGERPRINT_SECRET" not in env
        (mount,) = [v for v in service["volumes"] if v["target"] == env["WARDEN_AUDIT_SIGNING_KEY"]]
        assert mount == {
            "type": "bind",
            "source": "./deploy/secrets/audit-signing.key",
            "target": env["WARDEN_AUDIT_SIGNING_KEY"],
            "read_only": True,
        }


def test_keys_init_writes_the_env_file_compose_reads(tmp_path: Path) -> None:
    result = CliRunner().invoke(warden_cli, ["keys", "init", str(tmp_path)])
    assert result.exit_code == 0, result.output
    env = dict(
        line.split("=", 1)
        for line in (tmp_path / Path(SECRETS_ENV).name).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    shared = {"WARDEN_SECRET_KEY", "WARDEN_FINGERPRINT_SECRET", "WARDEN_AUDIT_SIGNING_KEY"}
    assert shared <= set(env)
    assert set(env) <= SETTINGS
    assert (tmp_path / "audit-signing.key").exists()


def test_mlflow_keeps_runs_in_postgres_and_artifacts_in_the_bucket() -> None:
    command = _command("mlflow")
    assert command[:2] == ["mlflow", "server"]
    backend = _postgres_url(_option(command, "--backend-store-uri"))
    assert backend.database == "mlflow"
    init = (ROOT / "deploy" / "postgres-init.sql").read_text()
    assert re.search(rf"^CREATE DATABASE {backend.database};$", init, flags=re.M)
    assert (
        "./deploy/postgres-init.sql:/docker-entrypoint-initdb.d/mlflow.sql:ro"
        in (SERVICES["postgres"]["volumes"])
    )

    assert "--serve-artifacts" in command
    destination = urlsplit(_option(command, "--artifacts-destination"))
    assert destination.scheme == "s3"
    bucket_command = " ".join(SERVICES["minio-bucket"]["entrypoint"])
    assert f"mc mb --ignore-existing store/{destination.hostname}" in bucket_command
    env = _environment("mlflow")
    assert urlsplit(env["MLFLOW_S3_ENDPOINT_URL"]).hostname == "minio"
    minio = _environment("minio")
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )


def test_the_collector_queues_on_disk_then_sends_to_the_api_replicas() -> None:
    traces = COLLECTOR["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    assert set(COLLECTOR["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    # No processor holds acknowledged spans in memory ahead of the queue.
    assert not [p for p in traces.get("processors", []) if p.split("/")[0] == "batch"]
    assert "processors" not in COLLECTOR or not any(
        p.split("/")[0] == "batch" for p in COLLECTOR["processors"]
    )

    name, exporter = _exporter()
    assert name.split("/")[0] == "otlphttp"
    endpoint = urlsplit(exporter["endpoint"])
    for replica in _role_services("api"):
        assert endpoint.hostname in SERVICES[replica]["networks"]["default"]["aliases"]
        assert str(endpoint.port) == _option(_command(replica), "--port")
    key_variable = re.fullmatch(r"Bearer \$\{env:(\w+)\}", exporter["headers"]["Authorization"])
    assert key_variable and key_variable.group(1) in _environment("collector")

    assert exporter["retry_on_failure"]["enabled"] is True
    queue = exporter["sending_queue"]
    assert queue["enabled"] is True
    storage = queue["storage"]
    assert storage.split("/")[0] == "file_storage"
    assert storage in COLLECTOR["service"]["extensions"]
    extension = COLLECTOR["extensions"][storage]
    assert extension["fsync"] is True
    # The queue's folder is a named volume: it outlives the container.
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["collector"]["volumes"]}
    assert mounts[extension["directory"]] in COMPOSE["volumes"]
    assert mounts["/etc/otelcol-contrib/config.yaml"] == "./deploy/otel-collector.yaml"

    # Batches made after the queue stay under the body size every replica accepts.
    batch = queue["batch"]
    assert batch["sizer"] == "bytes"
    default_limit = Settings.model_fields["payload_limit_bytes"].default
    for replica in _role_services("api"):
        limit = _environment(replica).get("WARDEN_PAYLOAD_LIMIT_BYTES")
        assert batch["max_size"] <= int(limit or default_limit)


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        if service.get("restart") == "no":
            continue
        assert service["healthcheck"]["test"], f"{name} has no healthcheck"
    for name in _warden_services():
        assert "/readyz" in " ".join(SERVICES[name]["healthcheck"]["test"])
    assert "13133" in " ".join(SERVICES["collector"]["healthcheck"]["test"])
    assert COLLECTOR["extensions"]["health_check"]["endpoint"].endswith(":13133")
    assert "health_check" in COLLECTOR["service"]["extensions"]


def test_services_start_in_order() -> None:
    def waits_for(name: str) -> dict[str, str]:
        return {
            dependency: condition["condition"]
            for dependency, condition in SERVICES[name].get("depends_on", {}).items()
        }

    assert waits_for("minio-bucket") == {"minio": "service_healthy"}
    assert waits_for("mlflow") == {
        "postgres": "service_healthy",
        "minio": "service_healthy",
        "minio-bucket": "service_completed_successfully",
    }
    for name in _warden_services():
        assert waits_for(name) == {"postgres": "service_healthy", "mlflow": "service_healthy"}
    assert waits_for("collector") == dict.fromkeys(_role_services("api"), "service_healthy")

    def depth(name: str) -> int:
        return 1 + max((depth(d) for d in waits_for(name)), default=0)

    depths = [depth(name) for name in ["postgres", "mlflow", *_warden_services(), "collector"]]
    assert depths[0] < depths[1] < min(depths[2:-1]) and max(depths[2:-1]) < depths[-1]


def test_the_images_build_from_files_that_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    sources = [
        path
        for source in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M)
        for path in source.split()
    ]
    for path in sources:
        assert (ROOT / path).exists(), f"Dockerfile copies missing {path}"
    # The compose files are mounted or built from deploy/, never baked into Warden's image.
    assert not [path for path in sources if path.startswith("deploy")]
    for name, service in SERVICES.items():
        if "build" in service and service["build"] != ".":
            assert (ROOT / service["build"] / "Dockerfile").exists(), name
