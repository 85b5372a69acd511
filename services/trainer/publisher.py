"""The trainer's events on Kafka: domain types in, protobuf out.

``ModelTrained`` (event id ``<job id>.trained``, key = use case) for each registered
version, ``TrainingRequested`` (event id = request id) recording each request the
trainer accepted from its API or from a drift report, so one topic shows them all, and
beside it ``TrainingSkipped`` (event id ``<job id>.skipped``) for a job that gave up.
"""

from __future__ import annotations

from aifactory.trainer.v1 import events_pb2 as trainer_events
from libs.bus import EventSink, topics
from services.trainer import convert
from services.trainer.domain import SkippedTraining, TrainedModel


class TrainerPublisher:
    def __init__(
        self,
        sink: EventSink,
        *,
        trained_topic: str = topics.MODEL_TRAINED,
        requested_topic: str = topics.TRAINING_REQUESTED,
    ) -> None:
        self._sink = sink
        self._trained_topic = trained_topic
        self._requested_topic = requested_topic

    async def model_trained(self, trained: TrainedModel) -> None:
        use_case = trained.job.use_case
        await self._sink.publish(
            self._trained_topic,
            convert.model_trained(trained),
            use_case=use_case,
            key=use_case,
            event_id=f"{trained.job.job_id}.trained",
        )

    async def training_skipped(self, skipped: SkippedTraining) -> None:
        """A job that gave up without training, on the requests' topic beside its request."""
        use_case = skipped.job.use_case
        await self._sink.publish(
            self._requested_topic,
            convert.training_skipped(skipped),
            use_case=use_case,
            key=use_case,
            event_id=f"{skipped.job.job_id}.skipped",
        )

    async def training_requested(self, event: trainer_events.TrainingRequested) -> None:
        """Record an accepted request (our own consumer sees it again and finds the job:
        idempotent by request id)."""
        await self._sink.publish(
            self._requested_topic,
            event,
            use_case=event.use_case,
            key=event.use_case,
            event_id=event.request_id,
        )
