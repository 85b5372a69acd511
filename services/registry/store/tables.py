"""The registry's tables (SQLAlchemy 2.x ORM). Rows never leave the store package.

Schema changes go through an Alembic revision in ``services/registry/migrations``;
a test compares :data:`METADATA` with the migrated schema on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from libs.sql import UtcDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# What the migrations create (``migrations/env.py`` hands it to Alembic as the target).
METADATA = Base.metadata


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    use_case: Mapped[str] = mapped_column(String(64), index=True)
    # Unique across use cases: the name is also the Triton model's folder.
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[dict[str, Any]] = mapped_column(JSON)


class VersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
        UniqueConstraint("model_id", "idempotency_key", name="uq_model_versions_idempotency"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    run_id: Mapped[str] = mapped_column(String(128), index=True)
    training_request_id: Mapped[str] = mapped_column(String(128))
    drift_report_id: Mapped[str] = mapped_column(String(128))
    reference_sha256: Mapped[str] = mapped_column(String(64))
    datasets: Mapped[list[Any]] = mapped_column(JSON)
    features: Mapped[list[Any]] = mapped_column(JSON)
    metrics: Mapped[list[Any]] = mapped_column(JSON)
    code_version: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, str]] = mapped_column(JSON)
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    evaluation_report_id: Mapped[str] = mapped_column(String(128))
    # NULL when not given, so the unique constraint only binds real keys.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[dict[str, Any]] = mapped_column(JSON)


class AliasRow(Base):
    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_by: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)


class RunRow(Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    use_case: Mapped[str] = mapped_column(String(64), index=True)
    model_name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    training_request_id: Mapped[str] = mapped_column(String(128))
    drift_report_id: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, str]] = mapped_column(JSON)
    environment: Mapped[dict[str, str]] = mapped_column(JSON)
    code_version: Mapped[str] = mapped_column(String(128))
    datasets: Mapped[list[Any]] = mapped_column(JSON)
    features: Mapped[list[Any]] = mapped_column(JSON)
    seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str] = mapped_column(Text)
    created_by: Mapped[dict[str, Any]] = mapped_column(JSON)


class RunMetricRow(Base):
    __tablename__ = "run_metrics"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    split: Mapped[str] = mapped_column(String(64), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    logged_at: Mapped[datetime] = mapped_column(UtcDateTime())


class EvaluationRow(Base):
    __tablename__ = "evaluations"

    report_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    champion_version: Mapped[int] = mapped_column(Integer)
    gates: Mapped[list[Any]] = mapped_column(JSON)
    metrics: Mapped[list[Any]] = mapped_column(JSON)
    dataset: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    evaluated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AuditRow(Base):
    """Append-only: database triggers refuse UPDATE and DELETE (see the migration)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_subject", "use_case", "model_name", "version"),)

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    time_us: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(64))
    actor_subject: Mapped[str] = mapped_column(String(256))
    actor_roles: Mapped[list[str]] = mapped_column(JSON)
    use_case: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    alias: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    evidence_ids: Mapped[list[str]] = mapped_column(JSON)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """One row: the chain's last sequence and hash. Every write transaction updates it
    first, which serialises writers on every backend."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sequence: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class OutboxRow(Base):
    """Events written in the transaction of their change, published after it (outbox)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    use_case: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)


class ProcessedEventRow(Base):
    """Ids of consumed events whose effect is done (idempotent consumers)."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source: Mapped[str] = mapped_column(String(128))
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PredictionRow(Base):
    """prediction id → model version, fed by the predictions topic."""

    __tablename__ = "prediction_index"

    prediction_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    shadow: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    use_case: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    alias: Mapped[str] = mapped_column(String(64))
    predicted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    trace_id: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(256), server_default="")


class ArtifactBlobRow(Base):
    """One content-addressed blob of the database artifact store (store/blobs.py)."""

    __tablename__ = "artifact_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ArtifactChunkRow(Base):
    """The ``seq``-th piece of a blob, from 0, in order (bytea on PostgreSQL)."""

    __tablename__ = "artifact_chunks"

    sha256: Mapped[str] = mapped_column(
        String(64), ForeignKey("artifact_blobs.sha256", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class UseCaseRow(Base):
    """The use-case catalogue: one row per use case, pointing at its current version."""

    __tablename__ = "usecases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_by: Mapped[dict[str, Any]] = mapped_column(JSON)


class UseCaseVersionRow(Base):
    """Every applied version of every use case's spec (never changed once written)."""

    __tablename__ = "usecase_versions"

    name: Mapped[str] = mapped_column(ForeignKey("usecases.name"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec_yaml: Mapped[str] = mapped_column(Text)
    spec_sha256: Mapped[str] = mapped_column(String(64))
    # Keys that differ from the version before (empty for the first).
    changes: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    applied_at: Mapped[datetime] = mapped_column(UtcDateTime())
    applied_by: Mapped[dict[str, Any]] = mapped_column(JSON)
    audit_event_id: Mapped[str] = mapped_column(String(64))
