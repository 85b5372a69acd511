"""gRPC servicer of the gateway service."""
from __future__ import annotations

from aifactory.gateway.v1 import gateway_service_pb2_grpc


class GatewayServicer(gateway_service_pb2_grpc.GatewayServiceServicer):
    """Its methods come with issue #5; until then the generated base answers UNIMPLEMENTED."""
