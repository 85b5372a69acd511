"""Settings of the evaluator service (environment variables AIF_EVALUATOR_*)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from libs.bus import topics
from libs.sandbox import SandboxSettings
from libs.settings import (
    ConsumerSettings,
    DatabaseSettings,
    FeatureStoreClientSettings,
    RegistryClientSettings,
    UseCaseSourceSettings,
)


class EvaluatorSettings(
    UseCaseSourceSettings,
    DatabaseSettings,
    ConsumerSettings,
    RegistryClientSettings,
    FeatureStoreClientSettings,
    SandboxSettings,
):
    """Reports live in ``database_url``; holdouts come from the feature store, artifacts
    from the registry, which records the verdicts (both called with ``service_token``)."""

    service: ClassVar[str] = "evaluator"

    grpc_port: int = Field(default=50054, ge=0, le=65535)
    metrics_port: int = Field(default=9104, ge=0, le=65535)

    # A holdout with fewer labelled rows fails the holdout_size gate.
    min_holdout_rows: int = Field(default=50, ge=1)
    # The fairness gate's sampling allowance is at most this fraction of the spec's max_gap
    # (0: none; the gate's threshold in each report is the effective bound).
    fairness_allowance_cap: float = Field(default=0.5, ge=0.0, le=1.0)

    model_trained_topic: str = topics.MODEL_TRAINED
    model_evaluated_topic: str = topics.MODEL_EVALUATED
