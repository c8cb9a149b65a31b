"""docker-compose.yml cannot run here (no Docker engine): check what it says instead."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from sqlalchemy.engine import make_url

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _environment(service: str) -> dict[str, str]:
    env = COMPOSE["services"][service]["environment"]
    return dict(env) if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def test_the_api_runs_warden_against_the_postgres_service() -> None:
    services = COMPOSE["services"]
    assert {"postgres", "api"} <= set(services)
    api = services["api"]
    assert api["command"][:2] == ["warden", "serve"]
    assert api["command"][api["command"].index("--host") + 1] == "0.0.0.0"
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])

    url = make_url(
        re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", _environment("api")["WARDEN_DATABASE_URL"])
    )
    assert url.drivername == "postgresql+psycopg"
    assert url.host == "postgres"
    pg = _environment("postgres")
    assert (url.username, url.database) == (pg["POSTGRES_USER"], pg["POSTGRES_DB"])


def test_every_warden_variable_in_compose_is_a_real_setting() -> None:
    fields = {f"WARDEN_{name.upper()}" for name in Settings.model_fields}
    for name, service in COMPOSE["services"].items():
        for variable in _environment(name) if "environment" in service else {}:
            if variable.startswith("WARDEN_"):
                assert variable in fields, f"{name}: {variable} is not a Warden setting"
    # Replicas must share the server secret, so compose refuses to start without one.
    assert ":?" in _environment("api")["WARDEN_SECRET_KEY"]


def test_the_image_builds_from_files_that_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"Dockerfile copies missing {path}"
