"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 11:26:51.521780
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# 64-bit ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('projects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_projects')),
    sa.UniqueConstraint('name', name=op.f('uq_projects_name'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('key_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('scopes', JSON, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_api_keys_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash')),
    sa.UniqueConstraint('key_id', name=op.f('uq_api_keys_key_id'))
    )
    op.create_index('ix_api_keys_project', 'api_keys', ['project_id'], unique=False)
    op.create_table('audit_checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('tree_size', sa.BigInteger(), nullable=False),
    sa.Column('root_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.LargeBinary(length=64), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_audit_checkpoints_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoints')),
    sa.UniqueConstraint('project_id', 'tree_size', name=op.f('uq_audit_checkpoints_project_id_tree_size'))
    )
    op.create_table('audit_events',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('payload', JSON, nullable=False),
    sa.Column('prev_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_audit_events_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events')),
    sa.UniqueConstraint('project_id', 'seq', name=op.f('uq_audit_events_project_id_seq'))
    )
    op.create_table('drift_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('model_name', sa.String(length=256), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('window_start_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('window_end_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('reference', JSON, nullable=False),
    sa.Column('scores', JSON, nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('mlflow_run_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_drift_reports_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_drift_reports'))
    )
    op.create_index('ix_drift_reports_model', 'drift_reports', ['project_id', 'model_name', 'model_version', 'created_at'], unique=False)
    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('first_seen_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('last_seen_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('aliases', JSON, nullable=False),
    sa.Column('tags', JSON, nullable=False),
    sa.Column('lineage', JSON, nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_model_versions_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('project_id', 'name', 'version', name=op.f('uq_model_versions_project_id_name_version'))
    )
    op.create_table('planner_decisions',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('span_id', sa.String(length=16), nullable=False),
    sa.Column('chosen', sa.String(length=256), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('candidates', JSON, nullable=False),
    sa.Column('constraints', JSON, nullable=False),
    sa.Column('rationale', sa.Text(), nullable=True),
    sa.Column('time_unix_nano', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_planner_decisions_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_planner_decisions')),
    sa.UniqueConstraint('project_id', 'trace_id', 'span_id', name=op.f('uq_planner_decisions_project_id_trace_id_span_id'))
    )
    op.create_index('ix_planner_decisions_time', 'planner_decisions', ['project_id', 'time_unix_nano'], unique=False)
    op.create_table('policy_evaluations',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('trace_id', sa.String(length=32), nullable=True),
    sa.Column('span_id', sa.String(length=16), nullable=True),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('phase', sa.String(length=32), nullable=False),
    sa.Column('policy_id', sa.String(length=128), nullable=False),
    sa.Column('policy_version', sa.String(length=64), nullable=True),
    sa.Column('policy_hash', sa.String(length=64), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('time_unix_nano', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_policy_evaluations_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_evaluations')),
    sa.UniqueConstraint('project_id', 'trace_id', 'span_id', 'seq', name=op.f('uq_policy_evaluations_project_id_trace_id_span_id_seq'))
    )
    op.create_index('ix_policy_evaluations_policy', 'policy_evaluations', ['project_id', 'policy_id', 'time_unix_nano'], unique=False)
    op.create_table('request_models',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=64), nullable=False),
    sa.Column('model_name', sa.String(length=256), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('start_time_unix_nano', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_request_models_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_request_models')),
    sa.UniqueConstraint('project_id', 'trace_id', 'role', name=op.f('uq_request_models_project_id_trace_id_role'))
    )
    op.create_index('ix_request_models_model', 'request_models', ['project_id', 'model_name', 'model_version', 'start_time_unix_nano'], unique=False)
    op.create_table('requests',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('root_span_id', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('service_name', sa.String(length=256), nullable=True),
    sa.Column('start_time_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('end_time_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('fingerprint', sa.String(length=128), nullable=True),
    sa.Column('fingerprint_key_id', sa.String(length=64), nullable=True),
    sa.Column('subject', sa.String(length=256), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('models', JSON, nullable=False),
    sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_requests_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_requests')),
    sa.UniqueConstraint('project_id', 'trace_id', name=op.f('uq_requests_project_id_trace_id'))
    )
    op.create_index('ix_requests_fingerprint', 'requests', ['project_id', 'fingerprint'], unique=False)
    op.create_index('ix_requests_outcome', 'requests', ['project_id', 'outcome', 'start_time_unix_nano'], unique=False)
    op.create_index('ix_requests_time', 'requests', ['project_id', 'start_time_unix_nano', 'id'], unique=False)
    op.create_table('spans',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('span_id', sa.String(length=16), nullable=False),
    sa.Column('parent_span_id', sa.String(length=16), nullable=True),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('kind', sa.Integer(), nullable=False),
    sa.Column('start_time_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('end_time_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('status_message', sa.Text(), nullable=True),
    sa.Column('service_name', sa.String(length=256), nullable=True),
    sa.Column('scope_name', sa.String(length=256), nullable=True),
    sa.Column('attributes', JSON, nullable=False),
    sa.Column('events', JSON, nullable=False),
    sa.Column('links', JSON, nullable=False),
    sa.Column('resource', JSON, nullable=False),
    sa.Column('body_digest', sa.LargeBinary(length=32), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_spans_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spans')),
    sa.UniqueConstraint('project_id', 'trace_id', 'span_id', name=op.f('uq_spans_project_id_trace_id_span_id'))
    )
    op.create_table('world_model_states',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('span_id', sa.String(length=16), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('layer', sa.String(length=128), nullable=False),
    sa.Column('mean', sa.Float(), nullable=True),
    sa.Column('std', sa.Float(), nullable=True),
    sa.Column('min', sa.Float(), nullable=True),
    sa.Column('max', sa.Float(), nullable=True),
    sa.Column('l2_norm', sa.Float(), nullable=True),
    sa.Column('projection', JSON, nullable=False),
    sa.Column('tensor_sha256', sa.String(length=64), nullable=True),
    sa.Column('time_unix_nano', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_world_model_states_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_world_model_states')),
    sa.UniqueConstraint('project_id', 'trace_id', 'span_id', 'seq', name=op.f('uq_world_model_states_project_id_trace_id_span_id_seq'))
    )
    op.create_index('ix_world_model_states_layer', 'world_model_states', ['project_id', 'layer', 'time_unix_nano'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_world_model_states_layer', table_name='world_model_states')
    op.drop_table('world_model_states')
    op.drop_table('spans')
    op.drop_index('ix_requests_time', table_name='requests')
    op.drop_index('ix_requests_outcome', table_name='requests')
    op.drop_index('ix_requests_fingerprint', table_name='requests')
    op.drop_table('requests')
    op.drop_index('ix_request_models_model', table_name='request_models')
    op.drop_table('request_models')
    op.drop_index('ix_policy_evaluations_policy', table_name='policy_evaluations')
    op.drop_table('policy_evaluations')
    op.drop_index('ix_planner_decisions_time', table_name='planner_decisions')
    op.drop_table('planner_decisions')
    op.drop_table('model_versions')
    op.drop_index('ix_drift_reports_model', table_name='drift_reports')
    op.drop_table('drift_reports')
    op.drop_table('audit_events')
    op.drop_table('audit_checkpoints')
    op.drop_index('ix_api_keys_project', table_name='api_keys')
    op.drop_table('api_keys')
    op.drop_table('projects')
