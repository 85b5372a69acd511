"""gRPC servicer of the evaluator service: protobuf in, an :class:`EvaluatorCore` call, protobuf out."""

from __future__ import annotations

import grpc

from aifactory.evaluator.v1 import evaluator_service_pb2 as pb
from aifactory.evaluator.v1 import evaluator_service_pb2_grpc
from libs.auth import authorize_use_case
from libs.errors import InvalidArgument
from libs.lifecycle.data import window_from_proto
from libs.lifecycle.registry import ModelKey
from services.evaluator import convert
from services.evaluator.core import EvaluatorCore


class EvaluatorServicer(evaluator_service_pb2_grpc.EvaluatorServiceServicer):
    def __init__(self, core: EvaluatorCore) -> None:
        self._core = core

    async def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> pb.EvaluateResponse:
        model = ModelKey.from_proto(request.model)
        if not model.use_case:
            raise InvalidArgument("model.use_case", "required")
        if not model.model_name:
            raise InvalidArgument("model.model_name", "required")
        if model.version <= 0:
            raise InvalidArgument("model.version", "must be a registered version (≥ 1)")
        champion = None
        if request.HasField("champion"):
            champion = ModelKey.from_proto(request.champion)
            if (champion.use_case, champion.model_name) != (
                model.use_case,
                model.model_name,
            ) or champion.version <= 0:
                raise InvalidArgument("champion", "must be another version of the same model")
        window = window_from_proto(request.window) if request.HasField("window") else None
        report = await self._core.evaluate_on_demand(model, champion, window)
        return pb.EvaluateResponse(report=convert.report_pb(report))

    async def GetEvaluationReport(
        self, request: pb.GetEvaluationReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetEvaluationReportResponse:
        if not request.report_id:
            raise InvalidArgument("report_id", "required")
        report = self._core.get_report(request.report_id)
        authorize_use_case(report.model.use_case)
        return pb.GetEvaluationReportResponse(report=convert.report_pb(report))
