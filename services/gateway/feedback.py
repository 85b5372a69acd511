"""Outcomes reported for predictions → ``FeedbackRecorded`` on the feedback topic.

The outcome is checked against the use case's label (one of its classes, or a
number for regression). Recording is idempotent by ``feedback_id``: it is the
event id, which every consumer deduplicates on, so sending the same feedback twice
has one effect. The gateway remembers recent predictions (use case, entity, time)
to fill in the entity and the example's event time when the app leaves them out.

That memory is a cache, not the record: a prediction this process did not serve
(another replica served it, or this replica before a restart) is looked up in the
registry's prediction index (``GetPrediction``), the owner of where every prediction
came from. A prediction served in the last moments before the lookup may not be
indexed yet (its log entry is published every ``predlog_flush_ms``): the feedback is
then recorded with what the app sent, as before.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import events_pb2, gateway_service_pb2
from aifactory.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from libs.bus import EventPublisher
from libs.errors import InvalidArgument
from libs.usecase import UseCase, UseCases
from services.gateway.inputs import from_value, same_category

log = logging.getLogger(__name__)

# What the registry's index accepts as an id; the gateway's own are 32 hex characters.
PREDICTION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


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


class PredictionLookup(Protocol):
    async def find(self, prediction_id: str) -> Remembered | None:
        """The prediction as its owner indexed it, or None when unknown or unreachable."""
        ...


class RegistryPredictions:
    """Predictions this process did not serve, from the registry's prediction index."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 2.0) -> None:
        self._stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self._timeout_s = timeout_s

    async def find(self, prediction_id: str) -> Remembered | None:
        try:
            found = await self._stub.GetPrediction(
                registry_service_pb2.GetPredictionRequest(prediction_id=prediction_id),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                # Feedback is still recorded with what the app sent: the registry being
                # away must not refuse outcomes.
                log.warning(
                    "cannot look up prediction %s in the registry: %s", prediction_id, exc.code().name
                )
            return None
        at = found.predicted_at.ToNanoseconds() / 1e9 if found.HasField("predicted_at") else 0.0
        return Remembered(found.model.use_case, found.entity_id, at)


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
        # The gateway's live set (a use case applied while running is known at once).
        self._usecases = UseCases.view(usecases)
        self._recent = recent
        # Where to ask about a prediction not in ``recent`` (set when a registry is known).
        self.lookup: PredictionLookup | None = None

    async def _remembered(self, prediction_id: str) -> Remembered | None:
        found = self._recent.get(prediction_id)
        if found is None and self.lookup is not None:
            found = await self.lookup.find(prediction_id)
            if found is not None:
                self._recent.add(prediction_id, found.use_case, found.entity_id, found.at)
        return found

    async def record(self, req: gateway_service_pb2.RecordFeedbackRequest) -> str:
        if not req.prediction_id:
            raise InvalidArgument("prediction_id", "required")
        if not PREDICTION_ID.fullmatch(req.prediction_id):
            # Checked before any lookup or log line: ids are ours (32 hex characters).
            raise InvalidArgument(
                "prediction_id",
                f"not a prediction id ({len(req.prediction_id)} characters; at most 128 of A-Z a-z 0-9 _ . : -)",
            )
        remembered = await self._remembered(req.prediction_id)
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
            elif remembered is not None and remembered.at:
                event.event_time.FromNanoseconds(int(remembered.at * 1e9))
        await self._publisher.publish(
            self._topic, event, use_case=use_case, key=req.prediction_id, event_id=feedback_id
        )
        return feedback_id
