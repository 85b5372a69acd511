"""The business API (``GatewayService``): Predict, PredictBatch, RecordFeedback.

A prediction input names an entity (its features are fetched online from the
feature store), gives features inline, or both: inline values win over fetched
ones. Inline features are the model's inputs by name; a one-hot feature may be
given as its raw category (see :mod:`services.gateway.inputs`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from opentelemetry import trace

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc
from libs.errors import AifError, InvalidArgument, NotFound
from services.gateway.features import FeatureRow, FeatureSource
from services.gateway.feedback import FeedbackRecorder
from services.gateway.inputs import InputSchema, Scalar, from_value, to_value
from services.gateway.models import ModelManager
from services.gateway.scoring import Scored, Scorer

MAX_BATCH = 4096


def traceparent() -> str:
    """The current span's W3C trace context, for the prediction log ("" without a trace)."""
    ctx = trace.get_current_span().get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}" if ctx.is_valid else ""


def _fetched(schema: InputSchema, row: FeatureRow) -> dict[str, Scalar]:
    """A feature-store row restricted to model inputs (expanded one-hot columns win)."""
    out = {k: v for k, v in row.items() if k in schema.index}
    for name in schema.one_hot:
        if name in row and not any(schema.columns[i] in out for i in schema.one_hot[name].columns):
            out[name] = row[name]
    return out


class GatewayServicer(gateway_service_pb2_grpc.GatewayServiceServicer):
    def __init__(self, models: ModelManager, scorer: Scorer, features: FeatureSource,
                 feedback: FeedbackRecorder) -> None:
        self._models = models
        self._scorer = scorer
        self._features = features
        self._feedback = feedback

    async def Predict(self, request: pb.PredictRequest, context: Any) -> pb.PredictResponse:
        inputs = [pb.PredictionInput(entity_id=request.entity_id, features=request.features)]
        predictions = await self._predict(request.use_case, inputs, batch=False)
        return pb.PredictResponse(prediction=predictions[0])

    async def PredictBatch(self, request: pb.PredictBatchRequest, context: Any) -> pb.PredictBatchResponse:
        if not request.inputs:
            raise InvalidArgument("inputs", "at least one input")
        if len(request.inputs) > MAX_BATCH:
            raise InvalidArgument("inputs", f"at most {MAX_BATCH} inputs per call, got {len(request.inputs)}")
        return pb.PredictBatchResponse(predictions=await self._predict(request.use_case, request.inputs, batch=True))

    async def RecordFeedback(self, request: pb.RecordFeedbackRequest, context: Any) -> pb.RecordFeedbackResponse:
        return pb.RecordFeedbackResponse(feedback_id=await self._feedback.record(request))

    async def _predict(self, use_case: str, inputs: Sequence[pb.PredictionInput], *,
                       batch: bool) -> list[pb.Prediction]:
        served, _ = self._models.routing(use_case)  # NOT_FOUND before any work
        schema = served.schema
        fetched = await self._fetch(use_case, schema, inputs)
        rows: list[np.ndarray] = []
        errors: dict[int, str] = {}
        for i, item in enumerate(inputs):
            where = f"inputs[{i}]." if batch else ""
            try:
                values: dict[str, Scalar] = {}
                if item.entity_id and item.entity_id in fetched:
                    row = fetched[item.entity_id]
                    if row is None and not item.features:
                        raise NotFound(f"{where}entity_id: no online features for {item.entity_id!r} in {use_case}")
                    if row is not None:
                        values.update(_fetched(schema, row))
                elif not item.entity_id and not item.features:
                    raise InvalidArgument(f"{where}entity_id", "give an entity id or inline features")
                inline = {k: from_value(v) for k, v in item.features.items()}
                for name in inline:  # an inline one-hot value replaces the fetched columns
                    if name in schema.one_hot:
                        for col in schema.one_hot[name].columns:
                            values.pop(schema.columns[col], None)
                values.update(inline)
                rows.append(schema.row(values, field=f"{where}features"))
            except AifError as exc:
                if not batch:
                    raise
                errors[i] = f"{exc.code.name}: {exc.message}"
        good = [i for i in range(len(inputs)) if i not in errors]
        scored: list[Scored] = []
        if good:
            scored = await self._scorer.score(use_case, np.stack(rows), [inputs[i].entity_id for i in good],
                                              traceparent())
        out: list[pb.Prediction] = []
        results = dict(zip(good, scored, strict=True))
        for i, item in enumerate(inputs):
            if i in errors:
                out.append(pb.Prediction(entity_id=item.entity_id, error=errors[i]))
                continue
            s = results[i]
            primary, named = schema.outputs(s.output)
            out.append(pb.Prediction(
                prediction_id=s.prediction_id, entity_id=item.entity_id, output=to_value(primary),
                outputs={k: to_value(v) for k, v in named.items()},
                model=common_pb2.ModelRef(use_case=use_case, model_name=served.model, version=s.version)))
        return out

    async def _fetch(self, use_case: str, schema: InputSchema,
                     inputs: Sequence[pb.PredictionInput]) -> Mapping[str, FeatureRow | None]:
        """Online features of the entities whose inline features are not complete."""
        ids = list(dict.fromkeys(i.entity_id for i in inputs if i.entity_id and not schema.complete(i.features)))
        if not ids:
            return {}
        rows = await self._features.fetch(use_case, ids)
        return dict(zip(ids, rows, strict=True))
