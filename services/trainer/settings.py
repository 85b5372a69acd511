"""Settings of the trainer service (environment variables AIF_TRAINER_*)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from libs.settings import ServiceSettings


class TrainerSettings(ServiceSettings):
    service: ClassVar[str] = "trainer"

    grpc_port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9103, ge=0, le=65535)
