"""The trainer's Kafka handler: ``TrainingRequested`` and ``DriftDetected`` both become jobs.

A request is idempotent by its request id (the event id when it has none); a drift
report asks for one retraining per report id. A bad event (no use case, an unknown one,
a bad override) raises, and the consumer dead-letters it with the reason.
"""

from __future__ import annotations

from google.protobuf.message import Message

from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.trainer.v1 import events_pb2 as trainer_events
from libs.bus import Event
from libs.errors import InvalidArgument
from services.trainer import convert
from services.trainer.core import TrainerCore
from services.trainer.publisher import TrainerPublisher


class TrainerConsumer:
    def __init__(self, core: TrainerCore, publisher: TrainerPublisher) -> None:
        self._core = core
        self._publisher = publisher

    async def handle(self, event: Event[Message]) -> None:
        payload = event.payload
        if isinstance(payload, trainer_events.TrainingRequested):
            await self._core.submit(
                convert.job_from_requested(payload, fallback_id=f"evt-{event.meta.event_id}")
            )
        elif isinstance(payload, monitor_events.DriftDetected):
            requested = convert.requested_from_drift(
                payload,
                use_case=payload.use_case or event.meta.use_case,
                producer=event.meta.producer,
                event_id=event.meta.event_id,
            )
            _, created = await self._core.retrain_on_drift(
                convert.job_from_requested(requested), evidence_version=payload.model.version
            )
            if created:
                # The request on its own topic too: one place to see every training request.
                await self._publisher.training_requested(requested)
        elif isinstance(payload, trainer_events.TrainingSkipped):
            return  # our own record of a job that gave up, on the same topic: nothing to do
        else:
            raise InvalidArgument("event", f"unexpected {type(payload).__name__}")
