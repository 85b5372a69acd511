"""gRPC servicer of the evaluator service."""
from __future__ import annotations

from aifactory.evaluator.v1 import evaluator_service_pb2_grpc


class EvaluatorServicer(evaluator_service_pb2_grpc.EvaluatorServiceServicer):
    """Its methods come with issue #4; until then the generated base answers UNIMPLEMENTED."""
