"""gRPC servicer of the featurestore service."""
from __future__ import annotations

from aifactory.featurestore.v1 import featurestore_service_pb2_grpc


class FeatureStoreServicer(featurestore_service_pb2_grpc.FeatureStoreServiceServicer):
    """Its methods come with issue #3; until then the generated base answers UNIMPLEMENTED."""
