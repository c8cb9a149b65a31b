"""The Alembic revisions build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from app.config import Settings
from app.store import schema
from app.store.engine import create_db_engine
from app.store.tables import Base


def test_upgrade_head_matches_models_and_downgrade_base_removes_them(settings: Settings) -> None:
    engine: Engine = create_db_engine(settings)
    try:
        assert not schema.is_current(engine)
        schema.upgrade(engine)
        assert schema.is_current(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables

        schema.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

        schema.upgrade(engine)  # and back up again, cleanly
        assert schema.is_current(engine)
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(engine: Engine) -> None:
    schema.upgrade(engine)
    assert schema.is_current(engine)
