"""Settings of the ingestion service (environment variables AIF_INGESTION_*)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from libs.settings import ServiceSettings


class IngestionSettings(ServiceSettings):
    service: ClassVar[str] = "ingestion"

    grpc_port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9101, ge=0, le=65535)
