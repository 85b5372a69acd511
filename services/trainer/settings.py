"""Settings of the trainer service (environment variables AIF_TRAINER_*)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from libs.bus import topics
from libs.settings import (
    ConsumerSettings,
    DatabaseSettings,
    FeatureStoreClientSettings,
    RegistryClientSettings,
    UseCaseSourceSettings,
)


class TrainerSettings(
    UseCaseSourceSettings,
    DatabaseSettings,
    ConsumerSettings,
    RegistryClientSettings,
    FeatureStoreClientSettings,
):
    """Training jobs live in ``database_url``; training sets come from the feature store,
    versions go to the registry (both called with ``service_token``)."""

    service: ClassVar[str] = "trainer"

    grpc_port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9103, ge=0, le=65535)

    # Intra-op threads of a training; part of the reproducibility recipe (recorded per run).
    torch_threads: int = Field(default=1, ge=1, le=256)
    # Attempts, with doubling backoff, when the feature store or registry is unavailable.
    dependency_attempts: int = Field(default=6, ge=1, le=20)
    dependency_backoff_s: float = Field(default=1.0, ge=0, le=60)

    training_requested_topic: str = topics.TRAINING_REQUESTED
    drift_detected_topic: str = topics.DRIFT_DETECTED
    model_trained_topic: str = topics.MODEL_TRAINED

    # The monitor, which owns drift reports: a DriftDetected is confirmed there (called
    # with ``service_token``) before it trains anything. Empty: drift events are dropped.
    monitor_target: str = "127.0.0.1:50057"
    # An event's time is capped at now + this wherever it is stored or compared.
    event_skew_s: float = Field(default=30.0, ge=0, le=3600)
