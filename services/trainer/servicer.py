"""gRPC servicer of the trainer service."""
from __future__ import annotations

from aifactory.trainer.v1 import trainer_service_pb2_grpc


class TrainerServicer(trainer_service_pb2_grpc.TrainerServiceServicer):
    """Its methods come with issue #4; until then the generated base answers UNIMPLEMENTED."""
