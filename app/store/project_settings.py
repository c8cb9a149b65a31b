"""Sections of `projects.settings` (a JSON object per project), each owned by one capability
and validated by its own pydantic model: `drift` (app/drift/settings.py), `retention`
(app/audit/retention.py)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, select, update

from app.errors import BadRequest, NotFound
from app.store.tables import Project

M = TypeVar("M", bound=BaseModel)


def _stored(conn: Connection, project_id: int) -> dict[str, Any]:
    stored = conn.execute(
        select(Project.settings).where(Project.id == project_id)
    ).scalar_one_or_none()
    if stored is None:
        raise NotFound(f"no project with id {project_id}")
    return dict(stored or {})


def read_section(conn: Connection, project_id: int, key: str, model: type[M]) -> M:
    """The project's `key` section, defaults filled in."""
    return model.model_validate(_stored(conn, project_id).get(key, {}))


def merge_section(
    conn: Connection, project_id: int, key: str, model: type[M], changes: dict[str, Any]
) -> M:
    """Apply `changes` over the stored `key` section inside the caller's write transaction;
    a change the model refuses is a 400 naming the field, and nothing is stored."""
    stored = _stored(conn, project_id)
    try:
        merged = model.model_validate({**stored.get(key, {}), **changes})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise BadRequest(f"{key} settings: {where + ': ' if where else ''}{message}") from None
    conn.execute(
        update(Project)
        .where(Project.id == project_id)
        .values(settings={**stored, key: merged.model_dump(mode="json")})
    )
    return merged
