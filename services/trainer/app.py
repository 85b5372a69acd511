"""Wiring of the trainer service: settings and telemetry in, a ready server out."""
from __future__ import annotations

from aifactory.trainer.v1 import trainer_service_pb2, trainer_service_pb2_grpc
from libs.rpc import RpcServer
from libs.runtime import Service
from libs.telemetry import Telemetry
from services.trainer.servicer import TrainerServicer
from services.trainer.settings import TrainerSettings

SERVICE_NAME = trainer_service_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


async def build(settings: TrainerSettings, telemetry: Telemetry) -> Service:
    server = RpcServer(settings.grpc_address, telemetry, drain_seconds=settings.drain_seconds)
    server.add_service(
        trainer_service_pb2_grpc.add_TrainerServiceServicer_to_server, TrainerServicer(), SERVICE_NAME
    )
    return Service(server)
