"""The service's tables (DESIGN.md, "One wire format"). Every stored row belongs to a project.

Times of telemetry are kept as integer nanoseconds since the Unix epoch, exactly as OTLP
carries them; times of the service's own records are timezone-aware datetimes.
Traces and spans are joined by their OTLP ids (hex text), not by foreign keys, because the
spans of one trace arrive in any order and in any batch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONType, list[Any]: JSONType}


def _project_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), nullable=False)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Per-project settings (drift windows and schedule, alert webhook), see app/drift/settings.
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    # The public, displayable start of the key (prefix and first characters): enough to
    # recognise a key in a list, never enough to use it.
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    # HMAC-SHA256 of the whole key under the server secret; the key itself is never stored.
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    scopes: Mapped[list[Any]]
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_api_keys_project", "project_id"),)


class Request(Base):
    """One row per root span: one inference request of the hybrid stack."""

    __tablename__ = "requests"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = _project_fk()
    trace_id: Mapped[str] = mapped_column(String(32))
    root_span_id: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256))
    service_name: Mapped[str | None] = mapped_column(String(256))
    start_time_unix_nano: Mapped[int] = mapped_column(BigInteger)
    end_time_unix_nano: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str | None] = mapped_column(String(128))
    fingerprint_key_id: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(256))
    outcome: Mapped[str | None] = mapped_column(String(32))
    models: Mapped[dict[str, Any]]
    # The structured input as flat named features (`warden.input.features`): input drift.
    features: Mapped[dict[str, Any] | None]
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("project_id", "trace_id"),
        Index("ix_requests_time", "project_id", "start_time_unix_nano", "id"),
        Index("ix_requests_fingerprint", "project_id", "fingerprint"),
        Index("ix_requests_outcome", "project_id", "outcome", "start_time_unix_nano"),
    )


class RequestModel(Base):
    """Which model version served which stage of a request: the index behind model filters."""

    __tablename__ = "request_models"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = _project_fk()
    trace_id: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str] = mapped_column(String(64))
    start_time_unix_nano: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("project_id", "trace_id", "role"),
        Index(
            "ix_request_models_model",
            "project_id",
            "model_name",
            "model_version",
            "start_time_unix_nano",
        ),
    )


class Span(Base):
    """Every span as received, for the trace view; unknown attributes are kept as they are."""

    __tablename__ = "spans"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = _project_fk()
    trace_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str] = mapped_column(String(16))
    parent_span_id: Mapped[str | None] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256))
    kind: Mapped[int] = mapped_column(Integer)
    start_time_unix_nano: Mapped[int] = mapped_column(BigInteger)
    end_time_unix_nano: Mapped[int] = mapped_column(BigInteger)
    status_code: Mapped[int] = mapped_column(Integer)
    status_message: Mapped[str | None] = mapped_column(Text)
    service_name: Mapped[str | None] = mapped_column(String(256))
    scope_name: Mapped[str | None] = mapped_column(String(256))
    attributes: Mapped[dict[str, Any]]
    events: Mapped[list[Any]]
    links: Mapped[list[Any]]
    resource: Mapped[dict[str, Any]]
    # SHA-256 of the span's protobuf encoding: tells a harmless resend from a conflict.
    body_digest: Mapped[bytes] = mapped_column(LargeBinary(32))

    __table_args__ = (UniqueConstraint("project_id", "trace_id", "span_id"),)


class WorldModelState(Base):
    """One captured (step, layer) of the world model's rollout: summaries and a projection."""

    __tablename__ = "world_model_states"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = _project_fk()
    trace_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    layer: Mapped[str] = mapped_column(String(128))
    mean: Mapped[float | None] = mapped_column(Float)
    std: Mapped[float | None] = mapped_column(Float)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    l2_norm: Mapped[float | None] = mapped_column(Float)
    projection: Mapped[list[Any]]
    tensor_sha256: Mapped[str | None] = mapped_column(String(64))
    time_unix_nano: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("project_id", "trace_id", "span_id", "seq"),
        Index("ix_world_model_states_layer", "project_id", "layer", "time_unix_nano"),
    )


class PlannerDecision(Base):
    """The planner's whole decision: every candidate with its score, not only the winner."""

    __tablename__ = "planner_decisions"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = _project_fk()
    trace_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str] = mapped_column(String(16))
    chosen: Mapped[str | None] = mapped_column(String(256))
    confidence: Mapped[float | None] = mapped_column(Float)
    candidates: Mapped[list[Any]]
    constraints: Mapped[list[Any]]
    rationale: Mapped[str | None] = mapped_column(Text)
    time_unix_nano: Mapped[int] = mapped_column(BigInteger)
    # Summaries of the candidates for decision drift (app/ingest/decision_summary.py).
    chosen_score: Mapped[float | None] = mapped_column(Float)
    margin: Mapped[float | None] = mapped_column(Float)
    entropy: Mapped[float | None] = mapped_column(Float)
    n_candidates: Mapped[int | None] = mapped_column(Integer)
    constraints_bound: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (
        UniqueConstraint("project_id", "trace_id", "span_id"),
        Index("ix_planner_decisions_time", "project_id", "time_unix_nano"),
    )


class ModelVersion(Base):
    """A model version seen in traffic, with its MLflow lineage once resolved."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="unresolved")
    first_seen_unix_nano: Mapped[int] = mapped_column(BigInteger)
    last_seen_unix_nano: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[str | None] = mapped_column(String(64))
    aliases: Mapped[list[Any]] = mapped_column(default=list)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("project_id", "name", "version"),)


class PolicyEvaluation(Base):
    """One gate decision, with the exact policy (id, version, content hash) that made it."""

    __tablename__ = "policy_evaluations"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = _project_fk()
    trace_id: Mapped[str | None] = mapped_column(String(32))
    span_id: Mapped[str | None] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[str] = mapped_column(String(32))
    policy_id: Mapped[str] = mapped_column(String(128))
    policy_version: Mapped[str | None] = mapped_column(String(64))
    policy_hash: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    time_unix_nano: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("project_id", "trace_id", "span_id", "seq"),
        Index("ix_policy_evaluations_policy", "project_id", "policy_id", "time_unix_nano"),
        # The requests a policy judged one way (GET /v1/requests?policy_id=&policy_outcome=).
        Index(
            "ix_policy_evaluations_outcome", "project_id", "policy_id", "outcome", "time_unix_nano"
        ),
    )


class Deployment(Base):
    """An alias move asked for (promotion, rollback): who, when, from, to, and the gates' say."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    model_name: Mapped[str] = mapped_column(String(256))
    alias: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    from_version: Mapped[str | None] = mapped_column(String(64))
    to_version: Mapped[str | None] = mapped_column(String(64))
    allowed: Mapped[bool]
    verdicts: Mapped[list[Any]]
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        Index("ix_deployments_alias", "project_id", "model_name", "alias", "created_at"),
    )


class Review(Base):
    """A decision parked for a person by a `require_review` policy, and what they decided."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    trace_id: Mapped[str] = mapped_column(String(32))
    policy_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("project_id", "trace_id"),
        Index("ix_reviews_status", "project_id", "status", "created_at"),
    )


class DriftReport(Base):
    __tablename__ = "drift_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    window_start_unix_nano: Mapped[int] = mapped_column(BigInteger)
    window_end_unix_nano: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[dict[str, Any]]
    scores: Mapped[dict[str, Any]]
    verdict: Mapped[str] = mapped_column(String(16))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    # The reports of one drift job (one per kind) share its id.
    job_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        Index("ix_drift_reports_model", "project_id", "model_name", "model_version", "created_at"),
    )


class AuditEvent(Base):
    """The append-only, hash-chained ledger: `hash = SHA-256(prev_hash || canonical event)`."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = _project_fk()
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("project_id", "seq"),)


class AuditCheckpoint(Base):
    """A signed tree head over the ledger: size, Merkle root, time, Ed25519 signature."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    tree_size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))

    __table_args__ = (UniqueConstraint("project_id", "tree_size"),)


class AuditHead(Base):
    """Where a project's ledger stands: last seq and hash, the Merkle accumulator's state.

    Every append locks this row (SELECT ... FOR UPDATE on PostgreSQL), so one writer at a time
    extends a project's chain. It is a cache of the ledger: `warden audit verify` recomputes
    it from the events and reports a row out of step.
    """

    __tablename__ = "audit_heads"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    # {"size": n, "roots": [hex, ...]}: MerkleAccumulator.state(), largest subtree first.
    merkle_state: Mapped[dict[str, Any]]
    # The policy set hash the ledger last recorded (`policy_set.changed`).
    policy_set_hash: Mapped[str | None] = mapped_column(String(64))


_BIG_ID = BigInteger().with_variant(Integer, "sqlite")


class SubjectKey(Base):
    """A data key for one subject's retained payloads (or one request's, `subject` NULL).

    The key is stored wrapped (AES key wrap) under a key derived from the server secret.
    Erasure overwrites `key` and `subject` with NULL: the payloads become unreadable and the
    random `pseudonym` the ledger names the subject by no longer leads to anyone.
    """

    __tablename__ = "subject_keys"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    subject: Mapped[str | None] = mapped_column(String(256))
    pseudonym: Mapped[str] = mapped_column(String(32))
    key: Mapped[bytes | None] = mapped_column(LargeBinary(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("project_id", "subject"), UniqueConstraint("pseudonym"))


class RequestPayload(Base):
    """A request's retained raw input, AES-256-GCM encrypted under its subject's data key."""

    __tablename__ = "request_payloads"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    trace_id: Mapped[str] = mapped_column(String(32))
    subject_key_id: Mapped[int] = mapped_column(
        _BIG_ID, ForeignKey("subject_keys.id", ondelete="CASCADE")
    )
    # 12-byte nonce || ciphertext || 16-byte tag
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("project_id", "trace_id"),
        Index("ix_request_payloads_key", "subject_key_id"),
    )


class LegalHold(Base):
    """A legal hold: while active, retention deletes nothing of the project, model or subject."""

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    scope: Mapped[str] = mapped_column(String(16))  # project | model | subject
    model_name: Mapped[str | None] = mapped_column(String(256))
    model_version: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    released_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_legal_holds_project", "project_id", "released_at"),)


class RequestRollup(Base):
    """Requests of one project per minute or hour: the dashboard's overview reads these
    (app/dashboard/rollups.py folds `requests` into them)."""

    __tablename__ = "request_rollups"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    width_seconds: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_unix_nano: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    # Requests that met at least one such policy verdict.
    denied: Mapped[int] = mapped_column(BigInteger)
    warned: Mapped[int] = mapped_column(BigInteger)
    reviewed: Mapped[int] = mapped_column(BigInteger)
    duration_ms_sum: Mapped[float] = mapped_column(Float)
    # Latency histogram: uint32 little-endian counts per bucket (rollups.EDGES).
    latency: Mapped[bytes] = mapped_column(LargeBinary)
    outcomes: Mapped[dict[str, Any]]


class RollupCursor(Base):
    """Where the rollups stand: the id of the last request folded in (one row, id 1)."""

    __tablename__ = "request_rollup_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_request_id: Mapped[int] = mapped_column(BigInteger)


class ScoreConfig(Base):
    """What a score of a given name may hold in a project: its type and range or categories."""

    __tablename__ = "score_configs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    name: Mapped[str] = mapped_column(String(128))
    # `numeric`, `boolean` or `categorical`.
    data_type: Mapped[str] = mapped_column(String(16))
    min_value: Mapped[float | None] = mapped_column(Float)
    max_value: Mapped[float | None] = mapped_column(Float)
    categories: Mapped[list[Any]] = mapped_column(default=list)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("project_id", "name"),)


class Score(Base):
    """Feedback on one request: a value, who gave it and, for a correction, what they chose."""

    __tablename__ = "scores"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = _project_fk()
    # The scored request (its trace id).
    trace_id: Mapped[str] = mapped_column(String(32))
    # Makes a resent score harmless: the OTLP span's `trace:span` ids, or the API's own id.
    score_key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    data_type: Mapped[str] = mapped_column(String(16))
    # Numeric values, and booleans as 1.0 / 0.0.
    value: Mapped[float | None] = mapped_column(Float)
    # Categorical values.
    string_value: Mapped[str | None] = mapped_column(String(256))
    # `human`, `user`, `automatic`, or `review` for what the review queue decided.
    source: Mapped[str] = mapped_column(String(16))
    author: Mapped[str | None] = mapped_column(String(128))
    comment: Mapped[str | None] = mapped_column(Text)
    # For a human correction: the action the person chose instead.
    correction: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("project_id", "score_key"),
        Index("ix_scores_request", "project_id", "trace_id"),
        Index("ix_scores_name", "project_id", "name", "created_at"),
    )


class Experiment(Base):
    """A traffic split between model versions of one stage, with shadow arms and its KPIs."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)
    # The stage it varies: `world_model` or `planner`.
    stage: Mapped[str] = mapped_column(String(32))
    # `subject` (sticky: one person always sees one arm) or `request`.
    unit: Mapped[str] = mapped_column(String(16))
    # Mixed into the assignment hash, so two experiments split the same units independently.
    salt: Mapped[str] = mapped_column(String(64))
    # [{"name", "model", "weight"}]: the first arm is the control.
    arms: Mapped[list[Any]]
    # [{"name", "model", "sample_rate"}]: run after the live answer, never returned.
    shadows: Mapped[list[Any]] = mapped_column(default=list)
    primary_kpi: Mapped[str] = mapped_column(String(64))
    guardrails: Mapped[list[Any]] = mapped_column(default=list)
    # `running` or `stopped`.
    status: Mapped[str] = mapped_column(String(16), default="running")
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Planned end (optional); `stopped_at` is when it actually stopped.
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The latest analysis (verdicts per KPI), kept for deploy gates and MLflow.
    results: Mapped[dict[str, Any]] = mapped_column(default=dict)
    results_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        Index("ix_experiments_status", "project_id", "status"),
    )


class RequestExperiment(Base):
    """Which arm of which experiment served a request: the index behind per-arm KPIs."""

    __tablename__ = "request_experiments"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = _project_fk()
    trace_id: Mapped[str] = mapped_column(String(32))
    experiment: Mapped[str] = mapped_column(String(128))
    stage: Mapped[str] = mapped_column(String(32))
    arm: Mapped[str] = mapped_column(String(128))
    start_time_unix_nano: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("project_id", "trace_id", "experiment"),
        Index(
            "ix_request_experiments_arm", "project_id", "experiment", "arm", "start_time_unix_nano"
        ),
    )


class ShadowRun(Base):
    """A shadow arm's answer to a live request's input: stored, compared, never returned."""

    __tablename__ = "shadow_runs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = _project_fk()
    # The shadow run's own trace (its spans, latent states and decision are under it).
    trace_id: Mapped[str] = mapped_column(String(32))
    # The live request it shadowed.
    request_trace_id: Mapped[str] = mapped_column(String(32))
    experiment: Mapped[str | None] = mapped_column(String(128))
    arm: Mapped[str | None] = mapped_column(String(128))
    models: Mapped[dict[str, Any]]
    chosen: Mapped[str | None] = mapped_column(String(256))
    outcome: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    duration_ms: Mapped[float] = mapped_column(Float)
    start_time_unix_nano: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("project_id", "trace_id"),
        Index("ix_shadow_runs_request", "project_id", "request_trace_id"),
        Index("ix_shadow_runs_experiment", "project_id", "experiment", "start_time_unix_nano"),
    )


class Tensor(Base):
    """A sampled world-model tensor (NumPy `.npy` bytes), content-addressed per project.

    In the database, not on a replica's disk, so every replica serves what any one stored;
    `WARDEN_TENSOR_MAX_BYTES` bounds one tensor (sampled tensors are small by design).
    """

    __tablename__ = "tensors"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ExportJob(Base):
    """An export the API was asked for, queued here for the deployment's exports worker.

    Any replica answers for any job; the bundle itself goes to MLflow's artifact store (the
    export's run), whose URI `bundle["uri"]` names, never to one replica's disk.
    """

    __tablename__ = "export_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[int] = _project_fk()
    # `Scope.to_json()` of app/audit/bundle.
    scope: Mapped[dict[str, Any]]
    # queued | running | done | failed
    status: Mapped[str] = mapped_column(String(16))
    # {"done": n, "total": n}
    progress: Mapped[dict[str, Any]]
    requested_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    # host:pid of the process running it: the exports worker that leads.
    runner: Mapped[str | None] = mapped_column(String(256))
    # {"bytes", "sha256", "uri"} once done.
    bundle: Mapped[dict[str, Any] | None]
    counts: Mapped[dict[str, Any] | None]
    anchor: Mapped[dict[str, Any] | None]
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_note: Mapped[str | None] = mapped_column(Text)
    ledger_seq: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_export_jobs_project", "project_id", "created_at"),
        Index("ix_export_jobs_status", "status", "created_at"),
    )


class DeploymentKey(Base):
    """The id of each secret the processes of a deployment must share (`server_secret`,
    `fingerprint_secret`, `audit_signing_key`): a process whose own differs refuses to start.

    A key id names a key without revealing it (app/config.py says how each is derived).
    """

    __tablename__ = "deployment_keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # host:pid (or the CLI) that recorded it.
    recorded_by: Mapped[str] = mapped_column(String(256))


class LlmCall(Base):
    """One language-model call of a request (a span with OpenTelemetry GenAI attributes): its
    models, tokens, cost as priced at ingest, finish reasons, prompt and completion."""

    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    trace_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str] = mapped_column(String(16))
    operation: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(128))
    request_model: Mapped[str | None] = mapped_column(String(256))
    response_model: Mapped[str | None] = mapped_column(String(256))
    # Whether the call may stand for its request's language-model stage (a model call, not
    # an agent, tool or embedding span).
    stage: Mapped[bool] = mapped_column(Boolean)
    input_tokens: Mapped[int | None] = mapped_column(BigInteger)
    output_tokens: Mapped[int | None] = mapped_column(BigInteger)
    # NULL when the project's price table has no price for the model.
    cost: Mapped[float | None] = mapped_column(Float)
    finish_reasons: Mapped[list[Any]]
    # [{"role", "content", "finish_reason"?}] as the span carried them, in order.
    input_messages: Mapped[list[Any]]
    output_messages: Mapped[list[Any]]
    start_time_unix_nano: Mapped[int] = mapped_column(BigInteger)
    end_time_unix_nano: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("project_id", "trace_id", "span_id"),
        Index("ix_llm_calls_model", "project_id", "response_model", "start_time_unix_nano"),
    )


class Retrieval(Base):
    """One document a retrieval step (RAG) of a request returned, in rank order."""

    __tablename__ = "retrievals"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    project_id: Mapped[int] = _project_fk()
    trace_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str] = mapped_column(String(16))
    # The document's rank within its retrieval span, from 0.
    seq: Mapped[int] = mapped_column(Integer)
    data_source: Mapped[str | None] = mapped_column(String(256))
    document_id: Mapped[str] = mapped_column(String(512))
    document_version: Mapped[str | None] = mapped_column(String(128))
    document_digest: Mapped[str | None] = mapped_column(String(256))
    score: Mapped[float | None] = mapped_column(Float)
    time_unix_nano: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("project_id", "trace_id", "span_id", "seq"),
        # Which requests were grounded on a document (and which version of it).
        Index("ix_retrievals_document", "project_id", "document_id", "time_unix_nano"),
    )
