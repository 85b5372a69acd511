"""Where a verdict goes: domain report in, ``ModelEvaluated`` protobuf out, twice.

First recorded in the registry (which acts on it by the use case's promotion policy),
then published on Kafka (event id ``<report id>.evaluated``, key = use case). Both are
idempotent by report id, so a replayed ``ModelTrained`` may safely do both again.
"""

from __future__ import annotations

from libs.bus import EventSink, topics
from libs.lifecycle.registry import EvaluationRegistry
from services.evaluator import convert
from services.evaluator.domain import Report


class EvaluatorPublisher:
    def __init__(
        self, sink: EventSink, registry: EvaluationRegistry, *, evaluated_topic: str = topics.MODEL_EVALUATED
    ) -> None:
        self._sink = sink
        self._registry = registry
        self._evaluated_topic = evaluated_topic

    async def model_evaluated(self, report: Report) -> None:
        evaluated = convert.evaluated_pb(report)
        use_case = report.model.use_case
        await self._registry.record_evaluation(evaluated)
        await self._sink.publish(
            self._evaluated_topic,
            evaluated,
            use_case=use_case,
            key=use_case,
            event_id=f"{report.report_id}.evaluated",
        )
