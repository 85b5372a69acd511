"""The gateway's two gRPC servicers: the business API and the Open Inference Protocol."""
from __future__ import annotations

from services.gateway.business import GatewayServicer
from services.gateway.oip import OipServicer

__all__ = ["GatewayServicer", "OipServicer"]
