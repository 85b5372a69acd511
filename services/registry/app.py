"""Wiring of the registry service: settings and telemetry in, a ready server out."""
from __future__ import annotations

from aifactory.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from libs.rpc import RpcServer
from libs.runtime import Service
from libs.telemetry import Telemetry
from services.registry.servicer import RegistryServicer
from services.registry.settings import RegistrySettings

SERVICE_NAME = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


async def build(settings: RegistrySettings, telemetry: Telemetry) -> Service:
    server = RpcServer(settings.grpc_address, telemetry, drain_seconds=settings.drain_seconds)
    server.add_service(
        registry_service_pb2_grpc.add_RegistryServiceServicer_to_server, RegistryServicer(), SERVICE_NAME
    )
    return Service(server)
