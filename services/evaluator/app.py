"""Wiring of the evaluator service: settings and telemetry in, a ready server out."""
from __future__ import annotations

from aifactory.evaluator.v1 import evaluator_service_pb2, evaluator_service_pb2_grpc
from libs.rpc import RpcServer
from libs.runtime import Service
from libs.telemetry import Telemetry
from services.evaluator.servicer import EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings

SERVICE_NAME = evaluator_service_pb2.DESCRIPTOR.services_by_name["EvaluatorService"].full_name


async def build(settings: EvaluatorSettings, telemetry: Telemetry) -> Service:
    server = RpcServer(settings.grpc_address, telemetry, drain_seconds=settings.drain_seconds)
    server.add_service(
        evaluator_service_pb2_grpc.add_EvaluatorServiceServicer_to_server, EvaluatorServicer(), SERVICE_NAME
    )
    return Service(server)
