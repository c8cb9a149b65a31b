"""drift: request features, project settings, drift job id

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 14:44:56.735939
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("drift_reports", sa.Column("job_id", sa.String(length=36), nullable=True))
    op.add_column(
        "projects", sa.Column("settings", JSON, server_default=sa.text("'{}'"), nullable=False)
    )
    op.add_column("requests", sa.Column("features", JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("requests", "features")
    op.drop_column("projects", "settings")
    op.drop_column("drift_reports", "job_id")
