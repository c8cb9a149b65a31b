"""language-model calls and retrieved documents

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 05:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('llm_calls',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('span_id', sa.String(length=16), nullable=False),
    sa.Column('operation', sa.String(length=64), nullable=True),
    sa.Column('provider', sa.String(length=128), nullable=True),
    sa.Column('request_model', sa.String(length=256), nullable=True),
    sa.Column('response_model', sa.String(length=256), nullable=True),
    sa.Column('stage', sa.Boolean(), nullable=False),
    sa.Column('input_tokens', sa.BigInteger(), nullable=True),
    sa.Column('output_tokens', sa.BigInteger(), nullable=True),
    sa.Column('cost', sa.Float(), nullable=True),
    sa.Column('finish_reasons', JSON, nullable=False),
    sa.Column('input_messages', JSON, nullable=False),
    sa.Column('output_messages', JSON, nullable=False),
    sa.Column('start_time_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('end_time_unix_nano', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_llm_calls_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_calls')),
    sa.UniqueConstraint('project_id', 'trace_id', 'span_id', name=op.f('uq_llm_calls_project_id_trace_id_span_id'))
    )
    op.create_index('ix_llm_calls_model', 'llm_calls', ['project_id', 'response_model', 'start_time_unix_nano'], unique=False)
    op.create_table('retrievals',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('span_id', sa.String(length=16), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data_source', sa.String(length=256), nullable=True),
    sa.Column('document_id', sa.String(length=512), nullable=False),
    sa.Column('document_version', sa.String(length=128), nullable=True),
    sa.Column('document_digest', sa.String(length=256), nullable=True),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('time_unix_nano', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_retrievals_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retrievals')),
    sa.UniqueConstraint('project_id', 'trace_id', 'span_id', 'seq', name=op.f('uq_retrievals_project_id_trace_id_span_id_seq'))
    )
    op.create_index('ix_retrievals_document', 'retrievals', ['project_id', 'document_id', 'time_unix_nano'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_retrievals_document', table_name='retrievals')
    op.drop_table('retrievals')
    op.drop_index('ix_llm_calls_model', table_name='llm_calls')
    op.drop_table('llm_calls')
