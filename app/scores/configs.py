"""Score configs of a project: put (create or replace), list, delete, and the rules of the
names a batch of scores uses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, select

from app.audit import ledger
from app.errors import NotFound
from app.scores.read_models import ScoreConfigOut
from app.scores.validation import ConfigRules, check_config
from app.store.dialect import insert_on_conflict
from app.store.engine import read_connection, write_transaction
from app.store.tables import ScoreConfig

CONFIGS: Table = ScoreConfig.__table__  # type: ignore[assignment]


def _out(row: Any) -> ScoreConfigOut:
    return ScoreConfigOut(
        name=row.name,
        data_type=row.data_type,
        min_value=row.min_value,
        max_value=row.max_value,
        categories=list(row.categories or []),
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def put_config(
    engine: Engine,
    project_id: int,
    name: str,
    data_type: str,
    min_value: float | None = None,
    max_value: float | None = None,
    categories: Sequence[Any] | None = None,
    description: str | None = None,
    actor: str = "",
) -> ScoreConfigOut:
    """Create the config `name`, or replace what it says; 422 naming the field that makes no
    sense. Scores already stored stay as they are. The change is a `score_config.set` event
    of the ledger: what a score may hold decides which feedback counts."""
    rules = check_config(name, data_type, min_value, max_value, categories)
    values = {
        "data_type": rules.data_type,
        "min_value": rules.min_value,
        "max_value": rules.max_value,
        "categories": list(rules.categories),
        "description": description or None,
        "updated_at": datetime.now(UTC),
    }
    where = (ScoreConfig.project_id == project_id, ScoreConfig.name == name)
    with write_transaction(engine) as conn:
        stmt = insert_on_conflict(
            conn, CONFIGS, ["project_id", "name"],
            set_=lambda excluded: {k: getattr(excluded, k) for k in values},
        )  # fmt: skip
        conn.execute(
            stmt, {"project_id": project_id, "name": name, "created_at": values["updated_at"],
                   **values},
        )  # fmt: skip
        row = conn.execute(select(ScoreConfig).where(*where)).one()
        ledger.append(conn, project_id, None, ledger.SCORE_CONFIG_SET, _event(row, actor))
    return _out(row)


def _event(row: Any, actor: str) -> dict[str, Any]:
    return {
        "name": row.name, "data_type": row.data_type, "min_value": row.min_value,
        "max_value": row.max_value, "categories": list(row.categories or []),
        "actor": actor or None,
    }  # fmt: skip


def list_configs(engine: Engine, project_id: int) -> list[ScoreConfigOut]:
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(ScoreConfig)
            .where(ScoreConfig.project_id == project_id)
            .order_by(ScoreConfig.name)
        )
        return [_out(r) for r in rows]


def delete_config(engine: Engine, project_id: int, name: str, actor: str = "") -> ScoreConfigOut:
    """Delete the config `name` (404 if there is none) and answer what it said, with a
    `score_config.deleted` event. Scores of that name are then accepted as their value's type
    says."""
    where = (ScoreConfig.project_id == project_id, ScoreConfig.name == name)
    with write_transaction(engine) as conn:
        row = conn.execute(select(ScoreConfig).where(*where)).one_or_none()
        if row is None:
            raise NotFound(f"no score config {name!r} in this project")
        conn.execute(delete(ScoreConfig).where(*where))
        ledger.append(conn, project_id, None, ledger.SCORE_CONFIG_DELETED, _event(row, actor))
    return _out(row)


def rules_for(conn: Connection, project_id: int, names: Iterable[str]) -> dict[str, ConfigRules]:
    """The configs of these score names that exist, as rules."""
    wanted = sorted({n for n in names if isinstance(n, str)})
    if not wanted:
        return {}
    rows = conn.execute(
        select(ScoreConfig).where(
            ScoreConfig.project_id == project_id, ScoreConfig.name.in_(wanted)
        )
    )
    return {
        r.name: ConfigRules(
            r.name, r.data_type, r.min_value, r.max_value, tuple(r.categories or ())
        )
        for r in rows
    }
