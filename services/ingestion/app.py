"""Wiring of the ingestion service: settings and telemetry in, a ready server out."""
from __future__ import annotations

from aifactory.ingestion.v1 import ingestion_service_pb2, ingestion_service_pb2_grpc
from libs.rpc import RpcServer
from libs.runtime import Service
from libs.telemetry import Telemetry
from services.ingestion.servicer import IngestionServicer
from services.ingestion.settings import IngestionSettings

SERVICE_NAME = ingestion_service_pb2.DESCRIPTOR.services_by_name["IngestionService"].full_name


async def build(settings: IngestionSettings, telemetry: Telemetry) -> Service:
    server = RpcServer(settings.grpc_address, telemetry, drain_seconds=settings.drain_seconds)
    server.add_service(
        ingestion_service_pb2_grpc.add_IngestionServiceServicer_to_server, IngestionServicer(), SERVICE_NAME
    )
    return Service(server)
