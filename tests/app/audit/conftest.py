"""Helpers for the live-ledger tests: the vault, projects, keys, and tampering access."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, select

from app.audit import heads, ledger
from app.audit.erasure import Vault
from app.audit.ledger.verify import Report, trusted_keys, verify_project
from app.config import Settings
from app.ingest.normalise import span_rows
from app.ingest.store import IngestResult, store_batch
from app.store.tables import Project
from app.tenancy import projects
from tests import otlp
from tests.conftest import TEST_SECRET

LEDGER_TABLES = ("audit_events", "audit_checkpoints")
# The vault a service with the test secret makes, sealing the inputs tests ingest directly.
VAULT = Vault(TEST_SECRET.encode())


@pytest.fixture(scope="session")
def signing_key() -> Ed25519PrivateKey:
    return heads.generate_key()


def project(engine: Engine, name: str = "shop") -> int:
    with contextlib.suppress(Exception):
        projects.create_project(engine, name)
    return projects.project_id(engine, name)


def ingest(engine: Engine, project_id: int, spans: list[Any]) -> IngestResult:
    return store_batch(engine, VAULT, project_id, span_rows(otlp.request(spans)))


def events(engine: Engine, project_id: int) -> list[Any]:
    with engine.connect() as conn:
        return list(ledger.iter_events(conn, project_id))


def verify(
    engine: Engine, name: str, key: Ed25519PrivateKey, pin: heads.TreeHead | None = None
) -> Report:
    with engine.connect() as conn:
        return verify_project(conn, name, trusted_keys([key.public_key()]), pin)


def drop_triggers(conn: Connection) -> None:
    """What an attacker with database access does first (inside the caller's transaction:
    a rollback brings the triggers back, DDL being transactional on both databases)."""
    if conn.dialect.name == "postgresql":
        for table in LEDGER_TABLES:
            conn.exec_driver_sql(f"DROP TRIGGER {table}_append_only ON {table}")
            conn.exec_driver_sql(f"DROP TRIGGER {table}_no_truncate ON {table}")
    else:
        for table in LEDGER_TABLES:
            conn.exec_driver_sql(f"DROP TRIGGER {table}_no_update")
            conn.exec_driver_sql(f"DROP TRIGGER {table}_no_delete")


@contextlib.contextmanager
def tampering(engine: Engine) -> Iterator[Connection]:
    """A transaction without the ledger's triggers, rolled back on exit."""
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            drop_triggers(conn)
            yield conn
        finally:
            trans.rollback()


def project_name(conn: Connection, project_id: int) -> str:
    return str(conn.execute(select(Project.name).where(Project.id == project_id)).scalar_one())


def settings_for(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update=changes)
