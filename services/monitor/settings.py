"""Settings of the monitor service (environment variables AIF_MONITOR_*)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from libs.bus import topics
from libs.settings import ConsumerSettings, DatabaseSettings, RegistryClientSettings, UseCaseSourceSettings


class MonitorSettings(UseCaseSourceSettings, DatabaseSettings, ConsumerSettings, RegistryClientSettings):
    """``database_url`` keeps reports, alerts, alarm state and the outbox (SQLite by
    default); ``registry_target`` serves each version's training reference
    (GetReferenceStats): empty, none, and only quality is watched."""

    service: ClassVar[str] = "monitor"

    grpc_port: int = Field(default=50057, ge=0, le=65535)
    metrics_port: int = Field(default=9107, ge=0, le=65535)

    # Longest wait before asking an unreachable registry again for a reference (the waits
    # start at 1 s and double up to this).
    reference_retry_s: float = Field(default=30.0, ge=0.1, le=3600)
    # Predictions waiting for an outcome (and outcomes for a prediction), per use case.
    join_capacity: int = Field(default=200_000, ge=100, le=10_000_000)
    # Journal entries between two checkpoints of the in-memory state (at least as many as
    # the joins waiting, so a checkpoint costs at most one write per event).
    checkpoint_every: int = Field(default=5000, ge=10, le=10_000_000)
    # How often the outbox relay retries unpublished events.
    relay_interval_s: float = Field(default=2.0, ge=0.05, le=600)

    predictions_topic: str = topics.PREDICTIONS
    feedback_topic: str = topics.FEEDBACK
    model_promoted_topic: str = topics.MODEL_PROMOTED
    drift_detected_topic: str = topics.DRIFT_DETECTED
    rollback_topic: str = topics.ROLLBACK_REQUESTED
