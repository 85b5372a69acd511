"""Wiring of the gateway service: settings and telemetry in, a ready server out."""
from __future__ import annotations

from aifactory.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from libs.rpc import RpcServer
from libs.runtime import Service
from libs.telemetry import Telemetry
from services.gateway.servicer import GatewayServicer
from services.gateway.settings import GatewaySettings

SERVICE_NAME = gateway_service_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


async def build(settings: GatewaySettings, telemetry: Telemetry) -> Service:
    server = RpcServer(settings.grpc_address, telemetry, drain_seconds=settings.drain_seconds)
    server.add_service(
        gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server, GatewayServicer(), SERVICE_NAME
    )
    return Service(server)
