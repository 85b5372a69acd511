"""Wiring of the monitor service: settings and telemetry in, a ready server out."""
from __future__ import annotations

from aifactory.monitor.v1 import monitor_service_pb2, monitor_service_pb2_grpc
from libs.rpc import RpcServer
from libs.runtime import Service
from libs.telemetry import Telemetry
from services.monitor.servicer import MonitorServicer
from services.monitor.settings import MonitorSettings

SERVICE_NAME = monitor_service_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name


async def build(settings: MonitorSettings, telemetry: Telemetry) -> Service:
    server = RpcServer(settings.grpc_address, telemetry, drain_seconds=settings.drain_seconds)
    server.add_service(
        monitor_service_pb2_grpc.add_MonitorServiceServicer_to_server, MonitorServicer(), SERVICE_NAME
    )
    return Service(server)
