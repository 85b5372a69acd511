"""Settings of the registry service (environment variables AIF_REGISTRY_*)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from libs.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    service: ClassVar[str] = "registry"

    grpc_port: int = Field(default=50055, ge=0, le=65535)
    metrics_port: int = Field(default=9105, ge=0, le=65535)
