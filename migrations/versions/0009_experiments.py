"""experiments, shadow runs, scores and score configs

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 23:43:51.180669
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:

    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column(
            "arms",
            JSON,
            nullable=False,
        ),
        sa.Column(
            "shadows",
            JSON,
            nullable=False,
        ),
        sa.Column("primary_kpi", sa.String(length=64), nullable=False),
        sa.Column(
            "guardrails",
            JSON,
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "results",
            JSON,
            nullable=False,
        ),
        sa.Column("results_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_experiments_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_experiments_project_id_name")),
    )
    op.create_index("ix_experiments_status", "experiments", ["project_id", "status"], unique=False)
    op.create_table(
        "request_experiments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("experiment", sa.String(length=128), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("arm", sa.String(length=128), nullable=False),
        sa.Column("start_time_unix_nano", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_request_experiments_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_experiments")),
        sa.UniqueConstraint(
            "project_id",
            "trace_id",
            "experiment",
            name=op.f("uq_request_experiments_project_id_trace_id_experiment"),
        ),
    )
    op.create_index(
        "ix_request_experiments_arm",
        "request_experiments",
        ["project_id", "experiment", "arm", "start_time_unix_nano"],
        unique=False,
    )
    op.create_table(
        "score_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("data_type", sa.String(length=16), nullable=False),
        sa.Column("min_value", sa.Float(), nullable=True),
        sa.Column("max_value", sa.Float(), nullable=True),
        sa.Column(
            "categories",
            JSON,
            nullable=False,
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_score_configs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_configs")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_score_configs_project_id_name")),
    )
    op.create_table(
        "scores",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("score_key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("data_type", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("string_value", sa.String(length=256), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column(
            "correction",
            JSON,
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_scores_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scores")),
        sa.UniqueConstraint("project_id", "score_key", name=op.f("uq_scores_project_id_score_key")),
    )
    op.create_index("ix_scores_name", "scores", ["project_id", "name", "created_at"], unique=False)
    op.create_index("ix_scores_request", "scores", ["project_id", "trace_id"], unique=False)
    op.create_table(
        "shadow_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("request_trace_id", sa.String(length=32), nullable=False),
        sa.Column("experiment", sa.String(length=128), nullable=True),
        sa.Column("arm", sa.String(length=128), nullable=True),
        sa.Column(
            "models",
            JSON,
            nullable=False,
        ),
        sa.Column("chosen", sa.String(length=256), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("start_time_unix_nano", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_shadow_runs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_runs")),
        sa.UniqueConstraint(
            "project_id", "trace_id", name=op.f("uq_shadow_runs_project_id_trace_id")
        ),
    )
    op.create_index(
        "ix_shadow_runs_experiment",
        "shadow_runs",
        ["project_id", "experiment", "start_time_unix_nano"],
        unique=False,
    )
    op.create_index(
        "ix_shadow_runs_request", "shadow_runs", ["project_id", "request_trace_id"], unique=False
    )


def downgrade() -> None:

    op.drop_index("ix_shadow_runs_request", table_name="shadow_runs")
    op.drop_index("ix_shadow_runs_experiment", table_name="shadow_runs")
    op.drop_table("shadow_runs")
    op.drop_index("ix_scores_request", table_name="scores")
    op.drop_index("ix_scores_name", table_name="scores")
    op.drop_table("scores")
    op.drop_table("score_configs")
    op.drop_index("ix_request_experiments_arm", table_name="request_experiments")
    op.drop_table("request_experiments")
    op.drop_index("ix_experiments_status", table_name="experiments")
    op.drop_table("experiments")
