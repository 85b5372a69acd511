"""Outcomes reported for predictions → ``FeedbackRecorded`` on the feedback topic.

The outcome is checked against the use case's label (one of its classes, or a
number for regression). Recording is idempotent by ``feedback_id``: it is the
event id, which every consumer deduplicates on, so sending the same feedback twice
has one effect.

Feedback is accepted only for a prediction this factory served, in the use case the
caller names (or, when it names none, the prediction's own): prediction ids are
unguessable (:mod:`services.gateway.ids`), and an id of another use case answers
exactly as an unknown one, so one app can neither claim nor probe another's
predictions. The gateway remembers recent predictions (use case, entity, time); a
prediction this process did not serve (another replica, or this one before a restart)
is looked up in the registry's prediction index (``GetPrediction``). A prediction
served in the last moments may not be indexed yet (its log entry is published every
``predlog_flush_ms``): the lookup is retried for ``lookup_wait_s`` before the feedback
is refused (NOT_FOUND); a registry that cannot be reached answers UNAVAILABLE, which
the app retries.

Times are the app's word, so they are clamped: ``observed_at`` lies between the
prediction's time and now + :data:`CLOCK_SKEW`, ``event_time`` is at most now +
:data:`CLOCK_SKEW` (the monitor joins and windows on them; a time next year would move
its clock). ``event_time`` may precede the prediction: it is the time of the example the
outcome labels (an application scored later), which training joins features on.
"""

from __future__ import annotations

import asyncio
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
from libs.errors import InvalidArgument, NotFound, Unavailable, clip
from libs.usecase import UseCase, UseCases
from services.gateway.inputs import from_value, same_category

log = logging.getLogger(__name__)

# What the registry's index accepts as an id; the gateway's own are 32 hex characters.
PREDICTION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# How far ahead of the gateway's clock a reported time may be (clocks of apps drift).
CLOCK_SKEW_S = 30.0
_UNKNOWN = "no such prediction in this use case"


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
    async def find(self, prediction_id: str, use_case: str = "") -> Remembered | None:
        """The prediction as its owner indexed it, or None when unknown; raises
        :class:`~libs.errors.Unavailable` when the owner cannot be asked."""
        ...


class RegistryPredictions:
    """Predictions this process did not serve, from the registry's prediction index."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 2.0) -> None:
        self._stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self._timeout_s = timeout_s

    async def find(self, prediction_id: str, use_case: str = "") -> Remembered | None:
        try:
            found = await self._stub.GetPrediction(
                registry_service_pb2.GetPredictionRequest(prediction_id=prediction_id, use_case=use_case),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
                return None
            # Refused, not recorded unchecked: the app retries an UNAVAILABLE.
            log.warning("cannot look up prediction %s in the registry: %s", prediction_id, exc.code().name)
            raise Unavailable("the prediction index cannot be reached; retry") from None
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
        *,
        lookup_wait_s: float = 1.5,
    ) -> None:
        self._publisher = publisher
        self._lookup_wait_s = lookup_wait_s
        self._topic = topic
        # The gateway's live set (a use case applied while running is known at once).
        self._usecases = UseCases.view(usecases)
        self._recent = recent
        # Where to ask about a prediction not in ``recent`` (set when a registry is known).
        self.lookup: PredictionLookup | None = None

    async def _remembered(self, prediction_id: str, use_case: str) -> Remembered | None:
        found = self._recent.get(prediction_id)
        if found is None and self.lookup is not None:
            # A prediction of another replica reaches the index within a flush or two.
            deadline = time.monotonic() + self._lookup_wait_s
            while (
                found := await self.lookup.find(prediction_id, use_case)
            ) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
            if found is not None:
                self._recent.add(prediction_id, found.use_case, found.entity_id, found.at)
        return found

    async def record(self, req: gateway_service_pb2.RecordFeedbackRequest) -> str:
        if not req.prediction_id:
            raise InvalidArgument("prediction_id", "required")
        if len(req.prediction_id) > 128 or not PREDICTION_ID.fullmatch(req.prediction_id):
            # Checked before any lookup or log line (the length first: the pattern never
            # sees a long input): ids are ours (32 hex characters).
            raise InvalidArgument(
                "prediction_id",
                f"not a prediction id ({len(req.prediction_id)} characters; at most 128 of A-Z a-z 0-9 _ . : -)",
            )
        if req.use_case:
            self._usecases.require(clip(req.use_case, 128))
        remembered = await self._remembered(req.prediction_id, req.use_case)
        if remembered is None or (req.use_case and remembered.use_case != req.use_case):
            # Another use case's prediction answers as an unknown one: nothing to probe.
            raise NotFound(f"prediction_id: {_UNKNOWN}")
        use_case = remembered.use_case
        uc = self._usecases.require(use_case)
        if not req.HasField("outcome"):
            raise InvalidArgument("outcome", "required")
        check_outcome(uc, req.outcome)
        feedback_id = req.feedback_id or uuid.uuid4().hex
        now_ns = time.time_ns()
        now = Timestamp()
        now.FromNanoseconds(now_ns)
        # The app's times, clamped (see the module doc).
        low = int(remembered.at * 1e9) if remembered.at else 0
        high = now_ns + int(CLOCK_SKEW_S * 1e9)
        event = events_pb2.FeedbackRecorded(
            feedback_id=feedback_id,
            prediction_id=req.prediction_id,
            use_case=use_case,
            outcome=req.outcome,
            recorded_at=now,
            entity_id=req.entity_id or remembered.entity_id,
        )
        event.observed_at.FromNanoseconds(
            _clamp(req.observed_at, low, high, "observed_at") if req.HasField("observed_at") else now_ns
        )
        # Fields another domain added later: set them only where this build has them.
        fields = event.DESCRIPTOR.fields_by_name
        if "record_id" in fields and req.record_id:
            event.record_id = req.record_id
        if "event_time" in fields:
            if req.HasField("event_time"):
                event.event_time.FromNanoseconds(_clamp(req.event_time, 0, high, "event_time"))
            elif remembered.at:
                event.event_time.FromNanoseconds(low)
        await self._publisher.publish(
            self._topic, event, use_case=use_case, key=req.prediction_id, event_id=feedback_id
        )
        return feedback_id


def _clamp(stamp: Timestamp, low: int, high: int, field: str) -> int:
    """``stamp`` in nanoseconds since the epoch, moved into ``[low, high]``."""
    if not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidArgument(field, "nanos out of range")
    at = stamp.seconds * 1_000_000_000 + stamp.nanos
    return min(max(at, low), high)
