"""Outcomes reported for predictions → ``FeedbackRecorded`` on the feedback topic.

The outcome is checked against the use case's label (one of its classes, or a
number for regression). Recording is idempotent by ``feedback_id``: it is the
event id, which every consumer deduplicates on, so sending the same feedback twice
has one effect. The gateway remembers recent predictions (use case, entity, time)
to fill in the entity and the example's event time when the app leaves them out.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import events_pb2, gateway_service_pb2
from libs.bus import EventPublisher
from libs.errors import InvalidArgument
from libs.usecase import UseCase, UseCases
from services.gateway.inputs import from_value, same_category


@dataclass(frozen=True, slots=True)
class Remembered:
    use_case: str
    entity_id: str
    at: float  # prediction time, seconds since the epoch


class RecentPredictions:
    """The last ``capacity`` predictions served, by prediction id (a bounded LRU)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._items: OrderedDict[str, Remembered] = OrderedDict()
        self._capacity = capacity

    def add(self, prediction_id: str, use_case: str, entity_id: str, at: float) -> None:
        self._items[prediction_id] = Remembered(use_case, entity_id, at)
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def get(self, prediction_id: str) -> Remembered | None:
        return self._items.get(prediction_id)


def check_outcome(uc: UseCase, value: common_pb2.Value) -> None:
    outcome = from_value(value)
    if outcome is None:
        raise InvalidArgument("outcome", "missing")
    if uc.task == "regression":
        if isinstance(outcome, bool) or not isinstance(outcome, int | float) or not math.isfinite(outcome):
            raise InvalidArgument(
                "outcome", f"expected a finite number for {uc.label.field}, got {outcome!r}"
            )
        return
    classes = list(uc.label.classes or ())
    if not any(same_category(c, outcome) for c in classes):
        raise InvalidArgument("outcome", f"{outcome!r} is not one of {classes}")


class FeedbackRecorder:
    def __init__(
        self,
        publisher: EventPublisher,
        topic: str,
        usecases: Mapping[str, UseCase],
        recent: RecentPredictions,
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._usecases = UseCases(usecases)
        self._recent = recent

    async def record(self, req: gateway_service_pb2.RecordFeedbackRequest) -> str:
        if not req.prediction_id:
            raise InvalidArgument("prediction_id", "required")
        remembered = self._recent.get(req.prediction_id)
        use_case = req.use_case or (remembered.use_case if remembered else "")
        if not use_case:
            raise InvalidArgument("use_case", "required (the prediction is not remembered here)")
        uc = self._usecases.require(use_case)
        if remembered is not None and remembered.use_case != use_case:
            raise InvalidArgument("use_case", f"prediction {req.prediction_id} is of {remembered.use_case}")
        if not req.HasField("outcome"):
            raise InvalidArgument("outcome", "required")
        check_outcome(uc, req.outcome)
        feedback_id = req.feedback_id or uuid.uuid4().hex
        now = Timestamp()
        now.FromNanoseconds(time.time_ns())
        event = events_pb2.FeedbackRecorded(
            feedback_id=feedback_id,
            prediction_id=req.prediction_id,
            use_case=use_case,
            outcome=req.outcome,
            recorded_at=now,
            entity_id=req.entity_id or (remembered.entity_id if remembered else ""),
        )
        event.observed_at.CopyFrom(req.observed_at if req.HasField("observed_at") else now)
        # Fields another domain added later: set them only where this build has them.
        fields = event.DESCRIPTOR.fields_by_name
        if "record_id" in fields and req.record_id:
            event.record_id = req.record_id
        if "event_time" in fields:
            if req.HasField("event_time"):
                event.event_time.CopyFrom(req.event_time)
            elif remembered is not None:
                event.event_time.FromNanoseconds(int(remembered.at * 1e9))
        await self._publisher.publish(
            self._topic, event, use_case=use_case, key=req.prediction_id, event_id=feedback_id
        )
        return feedback_id
