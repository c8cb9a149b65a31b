"""decision summaries for drift: chosen score, margin, entropy, candidates, binding

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 15:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("chosen_score", sa.Float()),
    ("margin", sa.Float()),
    ("entropy", sa.Float()),
    ("n_candidates", sa.Integer()),
    ("constraints_bound", sa.Boolean()),
)


def upgrade() -> None:
    # Decisions stored before this revision keep NULL summaries: the drift job computes
    # them from the stored candidates when it meets one.
    with op.batch_alter_table("planner_decisions") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("planner_decisions") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
