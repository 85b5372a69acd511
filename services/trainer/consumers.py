"""The trainer's Kafka handler: ``TrainingRequested`` and ``DriftDetected`` both become jobs.

A request is idempotent by its request id (the event id when it has none); a drift
report asks for one retraining per report id. A ``DriftDetected`` is a hint, not
authority: before it trains, the trainer reads the drift report it names from the
monitor over gRPC (it must exist, have detected drift, and be about the use case and
model version the event names) and builds the request from the monitor's report, not
from the event's fields. One the monitor does not confirm is forged
(:mod:`libs.lifecycle.confirm`): counted, logged and dead-lettered; nothing is trained.
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
from libs.errors import InvalidArgument
from libs.lifecycle.confirm import DEFAULT_SKEW_S, ForgedEvents, clamp
from libs.lifecycle.owners import MonitorReports
from services.trainer import convert
from services.trainer.core import TrainerCore
from services.trainer.publisher import TrainerPublisher

DRIFT_TYPE = event_type_of(monitor_events.DriftDetected)


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
        if isinstance(payload, trainer_events.TrainingRequested):
            await self._core.submit(
                convert.job_from_requested(payload, fallback_id=f"evt-{event.meta.event_id}")
            )
        elif isinstance(payload, monitor_events.DriftDetected):
            drift = await self._confirmed(
                payload, payload.use_case or event.meta.use_case, event.meta.event_id
            )
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
        elif isinstance(payload, trainer_events.TrainingSkipped):
            return  # our own record of a job that gave up, on the same topic: nothing to do
        else:
            raise InvalidArgument("event", f"unexpected {type(payload).__name__}")

    async def _confirmed(
        self, event: monitor_events.DriftDetected, use_case: str, event_id: str
    ) -> monitor_events.DriftDetected:
        """The monitor's drift report behind ``event``, as a ``DriftDetected`` of its own."""
        if self._monitor is None:
            raise self.forged.reject(DRIFT_TYPE, event_id, "no monitor to confirm it with")
        report = await self._monitor.drift_report(event.report_id) if event.report_id else None
        if report is None:
            raise self.forged.reject(DRIFT_TYPE, event_id, f"the monitor has no report {event.report_id!r}")
        claimed = (use_case, event.model.model_name, event.model.version)
        actual = (report.use_case, report.model.model_name, report.model.version)
        if claimed != actual:
            raise self.forged.reject(
                DRIFT_TYPE, event_id, f"report {report.report_id} is about {actual}, not {claimed}"
            )
        if not report.drift_detected:
            raise self.forged.reject(DRIFT_TYPE, event_id, f"report {report.report_id} detected no drift")
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
