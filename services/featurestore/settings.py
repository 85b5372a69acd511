"""Settings of the featurestore service (environment variables AIF_FEATURESTORE_*)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from libs.settings import ServiceSettings


class FeatureStoreSettings(ServiceSettings):
    service: ClassVar[str] = "featurestore"

    grpc_port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int = Field(default=9102, ge=0, le=65535)
