"""Wiring of the featurestore service: settings and telemetry in, a ready server out."""
from __future__ import annotations

from aifactory.featurestore.v1 import featurestore_service_pb2, featurestore_service_pb2_grpc
from libs.rpc import RpcServer
from libs.runtime import Service
from libs.telemetry import Telemetry
from services.featurestore.servicer import FeatureStoreServicer
from services.featurestore.settings import FeatureStoreSettings

SERVICE_NAME = featurestore_service_pb2.DESCRIPTOR.services_by_name["FeatureStoreService"].full_name


async def build(settings: FeatureStoreSettings, telemetry: Telemetry) -> Service:
    server = RpcServer(settings.grpc_address, telemetry, drain_seconds=settings.drain_seconds)
    server.add_service(
        featurestore_service_pb2_grpc.add_FeatureStoreServiceServicer_to_server, FeatureStoreServicer(), SERVICE_NAME
    )
    return Service(server)
