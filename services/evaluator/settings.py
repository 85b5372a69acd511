"""Settings of the evaluator service (environment variables AIF_EVALUATOR_*)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from libs.settings import ServiceSettings


class EvaluatorSettings(ServiceSettings):
    service: ClassVar[str] = "evaluator"

    grpc_port: int = Field(default=50054, ge=0, le=65535)
    metrics_port: int = Field(default=9104, ge=0, le=65535)
