"""Settings of the trainer service (environment variables AIF_TRAINER_*)."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from libs.bus import topics
from libs.settings import ServiceSettings

_BUILD = Path(__file__).resolve().parents[2] / "build"


class TrainerSettings(ServiceSettings):
    service: ClassVar[str] = "trainer"

    grpc_port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9103, ge=0, le=65535)

    # Use-case specs; empty means the shipped ones (deploy/usecases).
    usecases_dir: Path | None = None
    # Training jobs (SQLAlchemy URL): SQLite by default, PostgreSQL in production.
    database_url: str = f"sqlite:///{_BUILD / 'trainer' / 'jobs.db'}"
    featurestore_target: str = "127.0.0.1:50052"
    registry_target: str = "127.0.0.1:50055"
    # Bearer token sent to the feature store and the registry (empty: none).
    service_token: SecretStr = SecretStr("")
    # Intra-op threads of a training; part of the reproducibility recipe (recorded per run).
    torch_threads: int = Field(default=1, ge=1, le=256)
    # Attempts, with doubling backoff, when the feature store or registry is unavailable.
    dependency_attempts: int = Field(default=6, ge=1, le=20)
    dependency_backoff_s: float = Field(default=1.0, ge=0, le=60)

    consume: bool = True
    consumer_group: str = "aif-trainer"
    training_requested_topic: str = topics.TRAINING_REQUESTED
    drift_detected_topic: str = topics.DRIFT_DETECTED
    model_trained_topic: str = topics.MODEL_TRAINED
    dead_letter_topic: str = topics.DEAD_LETTER
