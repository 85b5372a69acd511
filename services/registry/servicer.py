"""gRPC servicer of the registry service."""
from __future__ import annotations

from aifactory.registry.v1 import registry_service_pb2_grpc


class RegistryServicer(registry_service_pb2_grpc.RegistryServiceServicer):
    """Its methods come with issue #4; until then the generated base answers UNIMPLEMENTED."""
