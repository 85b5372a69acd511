"""The trainer's Kafka handler: ``DriftDetected`` becomes a job; ``TrainingRequested`` is confirmed.

A drift report asks for one retraining per report id. A ``DriftDetected`` is a hint, not
authority: before it trains, the trainer reads the drift report it names from the
monitor over gRPC (it must exist, have detected drift, and be about the use case and
model version the event names) and builds the request from the monitor's report, not
from the event's fields. One the monitor does not confirm is forged
(:mod:`libs.lifecycle.confirm`): counted, logged and dead-lettered; nothing is trained.

``TrainingRequested`` is the trainer's own record of a request it accepted (published
after the job was stored), so it is confirmed with its owners: a manual or scheduled one
with this trainer's job store (the request came through the authenticated
``SubmitTraining`` and was stored under its request id, which it must name, with the same
use case and reason), a drift one with the monitor (the drift report it names, as for
``DriftDetected``; the job then comes from the monitor's report). A confirmed record is a
no-op (its job exists: idempotent by request id); anything else is forged and starts
nothing, as anyone who can write the topic could otherwise train at will.
A bad event (no use case, an unknown one, a bad override) raises, and the consumer
dead-letters it with the reason.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.message import Message

from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.trainer.v1 import events_pb2 as trainer_events
from libs.bus import Event
from libs.bus.types import event_type_of
from libs.errors import InvalidArgument, NotFound
from libs.lifecycle.confirm import DEFAULT_SKEW_S, ForgedEvents, clamp
from libs.lifecycle.owners import MonitorReports
from services.trainer import convert
from services.trainer.core import TrainerCore
from services.trainer.publisher import TrainerPublisher

DRIFT_TYPE = event_type_of(monitor_events.DriftDetected)
REQUESTED_TYPE = event_type_of(trainer_events.TrainingRequested)


class TrainerConsumer:
    def __init__(
        self,
        core: TrainerCore,
        publisher: TrainerPublisher,
        *,
        monitor: MonitorReports | None,
        forged: ForgedEvents | None = None,
        skew_s: float = DEFAULT_SKEW_S,
    ) -> None:
        self._core = core
        self._publisher = publisher
        self._monitor = monitor
        self.forged = forged or ForgedEvents("trainer")
        self._skew_s = skew_s

    async def handle(self, event: Event[Message]) -> None:
        payload = event.payload
        event_id = event.meta.event_id
        if isinstance(payload, trainer_events.TrainingRequested):
            if payload.reason == trainer_events.TRAINING_REASON_DRIFT:
                claim = monitor_events.DriftDetected(
                    report_id=payload.drift_report_id, use_case=payload.use_case
                )
                await self._retrain(claim, payload.use_case, event, REQUESTED_TYPE, model_claimed=False)
            else:
                self._accepted(payload, event_id)
        elif isinstance(payload, monitor_events.DriftDetected):
            await self._retrain(payload, payload.use_case or event.meta.use_case, event, DRIFT_TYPE)
        elif isinstance(payload, trainer_events.TrainingSkipped):
            return  # our own record of a job that gave up, on the same topic: nothing to do
        else:
            raise InvalidArgument("event", f"unexpected {type(payload).__name__}")

    async def _retrain(
        self,
        claim: monitor_events.DriftDetected,
        use_case: str,
        event: Event[Message],
        event_type: str,
        *,
        model_claimed: bool = True,
    ) -> None:
        """One retraining for the monitor's drift report behind ``claim`` (built from the report)."""
        drift = await self._confirmed(claim, use_case, event.meta.event_id, event_type, model_claimed)
        requested = convert.requested_from_drift(
            drift,
            use_case=drift.use_case,
            producer=event.meta.producer,
            event_id=event.meta.event_id,
        )
        _, created = await self._core.retrain_on_drift(
            convert.job_from_requested(requested), evidence_version=drift.model.version
        )
        if created:
            # The request on its own topic too: one place to see every training request.
            await self._publisher.training_requested(requested)

    def _accepted(self, event: trainer_events.TrainingRequested, event_id: str) -> None:
        """Confirms a manual or scheduled request with the job store; it starts nothing either way
        (the job it records was decided when it was accepted)."""
        try:
            job = self._core.get(event.request_id) if event.request_id else None
        except NotFound:
            job = None
        if job is None:
            raise self.forged.reject(
                REQUESTED_TYPE, event_id, f"this trainer accepted no request {event.request_id!r}"
            )
        recorded = convert.requested_from_job(job)
        if (recorded.use_case, recorded.reason) != (event.use_case, event.reason):
            raise self.forged.reject(
                REQUESTED_TYPE,
                event_id,
                f"request {job.job_id} is for {job.use_case} ({job.reason.value}), not {event.use_case}",
            )

    async def _confirmed(
        self,
        event: monitor_events.DriftDetected,
        use_case: str,
        event_id: str,
        event_type: str = DRIFT_TYPE,
        model_claimed: bool = True,
    ) -> monitor_events.DriftDetected:
        """The monitor's drift report behind ``event``, as a ``DriftDetected`` of its own
        (``model_claimed``: the event names the model version too, which must match)."""
        if self._monitor is None:
            raise self.forged.reject(event_type, event_id, "no monitor to confirm it with")
        report = await self._monitor.drift_report(event.report_id) if event.report_id else None
        if report is None:
            raise self.forged.reject(event_type, event_id, f"the monitor has no report {event.report_id!r}")
        claimed: tuple[object, ...] = (use_case, event.model.model_name, event.model.version)
        actual: tuple[object, ...] = (report.use_case, report.model.model_name, report.model.version)
        if not model_claimed:
            claimed, actual = claimed[:1], actual[:1]
        if claimed != actual:
            raise self.forged.reject(
                event_type, event_id, f"report {report.report_id} is about {actual}, not {claimed}"
            )
        if not report.drift_detected:
            raise self.forged.reject(event_type, event_id, f"report {report.report_id} detected no drift")
        confirmed_drift = {(e.feature, e.statistic) for e in report.evidence if e.drifted}
        now = datetime.now(UTC)
        at = report.created_at.ToDatetime(tzinfo=UTC) if report.HasField("created_at") else now
        confirmed = monitor_events.DriftDetected(
            report_id=report.report_id,
            use_case=report.use_case,
            model=report.model,
            # The change point the event names is in the data's own event time, which the
            # stored report (windows of arrival) does not keep; it only narrows the training
            # window, so it is taken from the event, for statistics the report confirms.
            evidence=[e for e in event.evidence if (e.feature, e.statistic) in confirmed_drift],
        )
        confirmed.detected_at.FromDatetime(clamp(at, now, self._skew_s))
        return confirmed
