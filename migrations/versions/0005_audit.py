"""audit ledger: heads, subject keys, encrypted payloads, legal holds; append-only triggers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 15:01:18.776573

The triggers make the database itself refuse UPDATE and DELETE on `audit_events` and
`audit_checkpoints` (and TRUNCATE on PostgreSQL). A cascade from a deleted project is a
DELETE too: a project with ledger events cannot be deleted.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LEDGER_TABLES = ("audit_events", "audit_checkpoints")
PG_FUNCTION = "warden_audit_append_only"


def upgrade() -> None:
    op.create_table(
        "audit_heads",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("merkle_state", JSON, nullable=False),
        sa.Column("policy_set_hash", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"],
            name=op.f("fk_audit_heads_project_id_projects"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_audit_heads")),
    )  # fmt: skip
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.String(length=256), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"],
            name=op.f("fk_legal_holds_project_id_projects"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )  # fmt: skip
    op.create_index(
        "ix_legal_holds_project", "legal_holds", ["project_id", "released_at"], unique=False
    )
    op.create_table(
        "subject_keys",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=True),
        sa.Column("pseudonym", sa.String(length=32), nullable=False),
        sa.Column("key", sa.LargeBinary(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"],
            name=op.f("fk_subject_keys_project_id_projects"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_keys")),
        sa.UniqueConstraint(
            "project_id", "subject", name=op.f("uq_subject_keys_project_id_subject")
        ),
        sa.UniqueConstraint("pseudonym", name=op.f("uq_subject_keys_pseudonym")),
    )  # fmt: skip
    op.create_table(
        "request_payloads",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("subject_key_id", BIG_ID, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"],
            name=op.f("fk_request_payloads_project_id_projects"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subject_key_id"], ["subject_keys.id"],
            name=op.f("fk_request_payloads_subject_key_id_subject_keys"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_payloads")),
        sa.UniqueConstraint(
            "project_id", "trace_id", name=op.f("uq_request_payloads_project_id_trace_id")
        ),
    )  # fmt: skip
    op.create_index(
        "ix_request_payloads_key", "request_payloads", ["subject_key_id"], unique=False
    )
    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_index("ix_request_payloads_key", table_name="request_payloads")
    op.drop_table("request_payloads")
    op.drop_table("subject_keys")
    op.drop_index("ix_legal_holds_project", table_name="legal_holds")
    op.drop_table("legal_holds")
    op.drop_table("audit_heads")


def _create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'warden: % on % refused: the audit ledger is append-only',
                    TG_OP, TG_TABLE_NAME;
            END
            $$
            """
        )
        for table in LEDGER_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()"
            )
        return
    for table in LEDGER_TABLES:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'warden: {action} on {table} refused: "
                "the audit ledger is append-only'); END"
            )


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in LEDGER_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")
        return
    for table in LEDGER_TABLES:
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
