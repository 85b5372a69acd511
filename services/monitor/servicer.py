"""gRPC servicer of the monitor service."""
from __future__ import annotations

from aifactory.monitor.v1 import monitor_service_pb2_grpc


class MonitorServicer(monitor_service_pb2_grpc.MonitorServiceServicer):
    """Its methods come with issue #6; until then the generated base answers UNIMPLEMENTED."""
