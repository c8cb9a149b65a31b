"""requests by policy verdict: an index on policy_evaluations (project, policy, outcome, time)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 16:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_policy_evaluations_outcome",
        "policy_evaluations",
        ["project_id", "policy_id", "outcome", "time_unix_nano"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_policy_evaluations_outcome", table_name="policy_evaluations")
