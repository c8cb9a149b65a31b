"""The alias moves asked for through the deploy gates, as `deployments` keeps them (allowed or
refused, with their verdicts): the history the dashboard's models page lists. `deploy` writes
them."""

from __future__ import annotations

from sqlalchemy import Engine, select

from app.governance.read_models import StoredMove
from app.store.engine import read_connection
from app.store.tables import Deployment


def list_moves(engine: Engine, project_id: int, limit: int = 20) -> list[StoredMove]:
    """The newest alias moves asked for, newest first."""
    query = (
        select(Deployment.model_name, Deployment.alias, Deployment.action,
               Deployment.from_version, Deployment.to_version, Deployment.allowed,
               Deployment.verdicts, Deployment.actor, Deployment.reason, Deployment.created_at)
        .where(Deployment.project_id == project_id)
        .order_by(Deployment.id.desc())
        .limit(limit)
    )  # fmt: skip
    with read_connection(engine) as conn:
        return [StoredMove.model_validate(dict(r._mapping)) for r in conn.execute(query)]
