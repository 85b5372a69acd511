"""What the registry does with the events it consumes.

- ``aifactory.evaluator.v1.ModelEvaluated`` (topic model.evaluated): confirmed with the
  evaluator first (its report, read by id over gRPC, must be about the event's version);
  the verdict is re-derived from the report's gate results (the event's ``passed`` flag
  is never trusted), recorded, and acted on by the use case's policy (auto-promote, wait
  for approval, or fail).
- ``aifactory.monitor.v1.RollbackRequested`` (topic rollback.requested): confirmed with
  the monitor first (the open rollback alert the request raised, about that use case and
  version), then the alias moves back to ``previous``, but only while it still points at
  the version the alarm was about.
- ``aifactory.gateway.v1.PredictionLogged`` (topic predictions): the prediction index,
  prediction id → model version (:class:`PredictionIndexer`).

An event its owner does not confirm is forged (:mod:`libs.lifecycle.confirm`): counted,
logged and dead-lettered; it changes nothing. The first two are idempotent by event id
(stored with the effect, in its transaction) and by report id, so a replay is a no-op.
A database outage, or an owner that cannot be reached, raises ``Unavailable`` so the
consumer retries; an event naming an unknown use case or version, or a rollback that
cannot happen, is dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from google.protobuf.message import DecodeError, Message

from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.monitor.v1 import monitor_service_pb2
from libs.bus import DeadLetters, Event, EventMeta, KafkaSecurity
from libs.bus.types import event_type_of
from libs.lifecycle.confirm import DEFAULT_SKEW_S, ForgedEvents, clamp
from libs.lifecycle.owners import EvaluationReports, MonitorReports, rollback_alert_id
from libs.retry import RetryPolicy
from services.registry import policy
from services.registry.convert import evaluation_of, prediction_of
from services.registry.core import Registry, utcnow
from services.registry.domain import CHAMPION, Evaluation, ModelKey, PredictionEntry

log = logging.getLogger(__name__)
PREDICTION_TYPE = event_type_of(gateway_events.PredictionLogged)


EVALUATED_TYPE = event_type_of(evaluator_events.ModelEvaluated)
ROLLBACK_TYPE = event_type_of(monitor_events.RollbackRequested)
ROLLBACK_ALERT_KIND = "rollback"


class RegistryEvents:
    """The handler of ``libs.bus.EventConsumer`` for verdicts and rollback requests.

    ``evaluations`` (the evaluator) and ``monitor`` confirm each event before it acts;
    ``forged`` counts the ones they do not confirm."""

    def __init__(
        self,
        registry: Registry,
        *,
        evaluations: EvaluationReports | None,
        monitor: MonitorReports | None,
        forged: ForgedEvents | None = None,
        skew_s: float = DEFAULT_SKEW_S,
    ) -> None:
        self._registry = registry
        self._evaluations = evaluations
        self._monitor = monitor
        self.forged = forged or ForgedEvents("registry")
        self._skew_s = skew_s

    async def handle(self, event: Event[Message]) -> None:
        payload = event.payload
        if isinstance(payload, evaluator_events.ModelEvaluated):
            evaluation = await self._confirmed_evaluation(payload, event.meta.event_id)
            outcome = await asyncio.to_thread(
                self._registry.apply_evaluation,
                evaluation,
                event_id=event.meta.event_id,
                source=event.topic,
            )
            log.info(
                "evaluation %s of %s: recorded=%s promoted=%s status=%s",
                evaluation.report_id,
                outcome.version.key,
                outcome.recorded,
                outcome.promoted,
                outcome.version.status.value,
            )
        elif isinstance(payload, monitor_events.RollbackRequested):
            use_case = payload.use_case or payload.model.use_case
            alert = await self._confirmed_alarm(payload, use_case, event.meta.event_id)
            result = await asyncio.to_thread(
                self._registry.rollback,
                ModelKey(use_case, payload.model.model_name),
                None,
                alias=CHAMPION,
                # The monitor's words and evidence, not the event's.
                reason=alert.message or "monitor alarm",
                evidence=[payload.request_id, alert.alert_id, alert.report_id],
                only_if_current=alert.model.version,
                event_id=event.meta.event_id,
                source=event.topic,
            )
            if result is not None:
                log.info(
                    "rolled back %s/%s champion from v%d to v%d",
                    use_case,
                    payload.model.model_name,
                    result.previous_version,
                    result.alias.version if result.alias else 0,
                )

    async def _confirmed_evaluation(
        self, event: evaluator_events.ModelEvaluated, event_id: str
    ) -> Evaluation:
        """The evaluator's own report of ``event``, its verdict re-derived from its gates."""
        if self._evaluations is None:
            raise self.forged.reject(EVALUATED_TYPE, event_id, "no evaluator to confirm it with")
        report = await self._evaluations.report(event.report_id) if event.report_id else None
        if report is None:
            raise self.forged.reject(
                EVALUATED_TYPE, event_id, f"the evaluator has no report {event.report_id!r}"
            )
        claimed = (event.model.use_case, event.model.model_name, event.model.version)
        actual = (report.model.use_case, report.model.model_name, report.model.version)
        if claimed != actual:
            raise self.forged.reject(
                EVALUATED_TYPE, event_id, f"report {report.report_id} is about {actual}, not {claimed}"
            )
        passed = policy.verdict_of(report.gates)
        if event.passed != passed:
            raise self.forged.reject(
                EVALUATED_TYPE,
                event_id,
                f"it says passed={event.passed}, the gates of report {report.report_id} say {passed}",
            )
        # Everything recorded comes from the evaluator's report, its time capped at now + skew.
        now = utcnow()
        confirmed = evaluator_events.ModelEvaluated(
            report_id=report.report_id,
            model=report.model,
            passed=passed,
            gates=report.gates,
            metrics=report.candidate_metrics,
        )
        if report.HasField("champion"):
            confirmed.champion.CopyFrom(report.champion)
        if report.HasField("dataset"):
            confirmed.dataset.CopyFrom(report.dataset)
        at = report.created_at.ToDatetime(tzinfo=now.tzinfo) if report.HasField("created_at") else now
        confirmed.evaluated_at.FromDatetime(clamp(at, now, self._skew_s))
        return evaluation_of(confirmed)

    async def _confirmed_alarm(
        self, event: monitor_events.RollbackRequested, use_case: str, event_id: str
    ) -> monitor_service_pb2.Alert:
        """The monitor's open rollback alert behind ``event``, about the version it names."""
        if self._monitor is None:
            raise self.forged.reject(ROLLBACK_TYPE, event_id, "no monitor to confirm it with")
        if event.alias and event.alias != CHAMPION:
            raise self.forged.reject(ROLLBACK_TYPE, event_id, f"the monitor never rolls back {event.alias!r}")
        alert = (
            await self._monitor.alert(use_case, rollback_alert_id(event.request_id))
            if use_case and event.request_id
            else None
        )
        if alert is None:
            raise self.forged.reject(
                ROLLBACK_TYPE, event_id, f"the monitor raised no rollback alert for {event.request_id!r}"
            )
        claimed = (use_case, event.model.model_name, event.model.version)
        actual = (alert.use_case, alert.model.model_name, alert.model.version)
        if alert.kind != ROLLBACK_ALERT_KIND or claimed != actual:
            raise self.forged.reject(
                ROLLBACK_TYPE,
                event_id,
                f"alert {alert.alert_id} is a {alert.kind} alert about {actual}, not {claimed}",
            )
        if alert.HasField("resolved_at"):
            raise self.forged.reject(ROLLBACK_TYPE, event_id, f"alert {alert.alert_id} is resolved")
        return alert


# The index's database down: up to 8 tries within 60 s (waits 0.5, 1, 2, 4, 8, 15, 15 s,
# each plus up to 1 s of jitter), then the error ends the indexer (the service stops
# serving and is restarted; the uncommitted batch is replayed). No poll happens while it
# waits, so the whole wait stays well under max.poll.interval.ms (300 s): the member is
# not evicted meanwhile.
INDEX_RETRY = RetryPolicy(attempts=8, initial_s=0.5, max_s=15.0, jitter_s=1.0, deadline_s=60.0)


class _Stopping(Exception):
    """Stop requested while a retry waited."""


class PredictionIndexer:
    """``PredictionLogged`` events in batches: one INSERT per poll (duplicates skipped by
    prediction id), then the offsets are committed, so a crash replays the batch and
    changes nothing. ``libs.bus.EventConsumer``'s loop with a batch effect instead of
    one per event, which the gateway's prediction rate needs; it reuses the bus's header
    parsing and dead letters."""

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        topic: str,
        registry: Registry,
        dead_letters: DeadLetters,
        *,
        security: KafkaSecurity | None = None,
        max_batch: int = 1000,
        retry: RetryPolicy = INDEX_RETRY,
    ) -> None:
        self.group_id = group_id
        self._registry = registry
        self._dlq = dead_letters
        self._max_batch = max_batch
        self._retry = retry
        self._stopping = asyncio.Event()
        self.indexed = 0
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **(security.client_kwargs() if security else {}),
        )

    async def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        await self._consumer.start()
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self._max_batch)
                if batches and not await self._handle(batches):
                    return
        finally:
            await self._consumer.stop()

    async def _handle(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> bool:
        """Index one poll's events; False when stopping before it could (nothing committed)."""
        entries: list[PredictionEntry] = []
        for records in batches.values():
            for record in records:
                entry = await self._decode(record)
                if entry is not None:
                    entries.append(entry)
        if entries:
            try:
                async for attempt in self._retry.asynchronous("indexing predictions", sleep=self._pause):
                    with attempt:
                        self.indexed += await asyncio.to_thread(self._registry.index_predictions, entries)
            except _Stopping:
                return False  # uncommitted: replayed after the restart
        await self._consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
        return True

    async def _pause(self, seconds: float) -> None:
        """A retry's wait; cut short by :meth:`stop` (then nothing of the batch is committed)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        if self._stopping.is_set():
            raise _Stopping

    async def _decode(self, record: ConsumerRecord) -> PredictionEntry | None:
        reason = ""
        try:
            meta = EventMeta.from_headers(record.headers or ())
            if meta.event_type != PREDICTION_TYPE:
                reason = f"event type {meta.event_type!r} not accepted on {record.topic}"
            else:
                msg = gateway_events.PredictionLogged()
                msg.ParseFromString(record.value or b"")
                entry = prediction_of(msg)
                if not entry.prediction_id:
                    reason = "prediction_id is empty"
                elif not entry.model_name or entry.version <= 0:
                    reason = "model.model_name and model.version are required"
                else:
                    return entry
        except KeyError as exc:
            reason = f"missing header {exc.args[0]}"
        except DecodeError as exc:
            reason = f"payload is not a valid {PREDICTION_TYPE}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a bad header or field must cost one event, not the indexer
            reason = f"cannot index it: {type(exc).__name__}: {exc}"
        await self._dlq.send(record, reason, "undecodable", self.group_id)
        return None
