"""Settings of the monitor service (environment variables AIF_MONITOR_*)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from libs.settings import ServiceSettings


class MonitorSettings(ServiceSettings):
    service: ClassVar[str] = "monitor"

    grpc_port: int = Field(default=50057, ge=0, le=65535)
    metrics_port: int = Field(default=9107, ge=0, le=65535)
