"""Settings of the evaluator service (environment variables AIF_EVALUATOR_*)."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from libs.bus import topics
from libs.settings import ServiceSettings

_BUILD = Path(__file__).resolve().parents[2] / "build"


class EvaluatorSettings(ServiceSettings):
    service: ClassVar[str] = "evaluator"

    grpc_port: int = Field(default=50054, ge=0, le=65535)
    metrics_port: int = Field(default=9104, ge=0, le=65535)

    # Use-case specs; empty means the shipped ones (deploy/usecases).
    usecases_dir: Path | None = None
    # Evaluation reports (SQLAlchemy URL): SQLite by default, PostgreSQL in production.
    database_url: str = f"sqlite:///{_BUILD / 'evaluator' / 'reports.db'}"
    featurestore_target: str = "127.0.0.1:50052"
    registry_target: str = "127.0.0.1:50055"
    # Bearer token sent to the feature store and the registry (empty: none).
    service_token: SecretStr = SecretStr("")
    # A holdout with fewer labelled rows fails the holdout_size gate.
    min_holdout_rows: int = Field(default=50, ge=1)

    consume: bool = True
    consumer_group: str = "aif-evaluator"
    model_trained_topic: str = topics.MODEL_TRAINED
    model_evaluated_topic: str = topics.MODEL_EVALUATED
    dead_letter_topic: str = topics.DEAD_LETTER
