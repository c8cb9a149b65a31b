"""dashboard: per-minute and per-hour request rollups, and where they stand

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 15:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "request_rollups",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("width_seconds", sa.Integer(), nullable=False),
        sa.Column("start_unix_nano", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("denied", sa.BigInteger(), nullable=False),
        sa.Column("warned", sa.BigInteger(), nullable=False),
        sa.Column("reviewed", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms_sum", sa.Float(), nullable=False),
        sa.Column("latency", sa.LargeBinary(), nullable=False),
        sa.Column("outcomes", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"],
            name=op.f("fk_request_rollups_project_id_projects"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "project_id", "width_seconds", "start_unix_nano", name=op.f("pk_request_rollups")
        ),
    )  # fmt: skip
    op.create_table(
        "request_rollup_cursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_request_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_rollup_cursor")),
    )


def downgrade() -> None:
    op.drop_table("request_rollup_cursor")
    op.drop_table("request_rollups")
