"""gRPC servicer of the ingestion service."""
from __future__ import annotations

from aifactory.ingestion.v1 import ingestion_service_pb2_grpc


class IngestionServicer(ingestion_service_pb2_grpc.IngestionServiceServicer):
    """Its methods come with issue #3; until then the generated base answers UNIMPLEMENTED."""
