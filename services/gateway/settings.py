"""Settings of the gateway service (environment variables AIF_GATEWAY_*)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from libs.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    service: ClassVar[str] = "gateway"

    grpc_port: int = Field(default=50056, ge=0, le=65535)
    metrics_port: int = Field(default=9106, ge=0, le=65535)
