"""Business API protobuf ⇄ the data plane's inputs and answers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as pb
from services.gateway.core import Predictions
from services.gateway.inputs import Input, from_value, to_value


def to_input(entity_id: str, features: Mapping[str, common_pb2.Value]) -> Input:
    return Input(entity_id, {k: from_value(v) for k, v in features.items()})


def to_inputs(items: Iterable[pb.PredictionInput]) -> list[Input]:
    return [to_input(item.entity_id, item.features) for item in items]


def to_predictions(answers: Predictions, entity_ids: Iterable[str]) -> list[pb.Prediction]:
    """One ``Prediction`` per input (``entity_ids`` in input order)."""
    out: list[pb.Prediction] = []
    outputs = answers.schema.outputs
    for entity_id, result in zip(entity_ids, answers.results, strict=True):
        if isinstance(result, str):
            out.append(pb.Prediction(entity_id=entity_id, error=result))
            continue
        primary, named = outputs(result.output)
        out.append(
            pb.Prediction(
                prediction_id=result.prediction_id,
                entity_id=entity_id,
                output=to_value(primary),
                outputs={k: to_value(v) for k, v in named.items()},
                model=common_pb2.ModelRef(
                    use_case=answers.use_case, model_name=answers.model, version=result.version
                ),
            )
        )
    return out
