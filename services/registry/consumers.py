"""What the registry does with the events it consumes.

- ``aifactory.evaluator.v1.ModelEvaluated`` (topic model.evaluated): record the verdict
  and act by the use case's policy (auto-promote, wait for approval, or fail).
- ``aifactory.monitor.v1.RollbackRequested`` (topic rollback.requested): move the alias
  back to ``previous``, but only while it still points at the version the alarm was about.
- ``aifactory.gateway.v1.PredictionLogged`` (topic predictions): the prediction index,
  prediction id → model version (:class:`PredictionIndexer`).

The first two are idempotent by event id (stored with the effect, in its transaction).
A database outage raises ``Unavailable`` so the consumer retries; an event naming an
unknown use case or version, or a rollback that cannot happen, is dead-lettered with
the reason.
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
from libs.bus import DeadLetters, Event, EventMeta, KafkaSecurity
from libs.bus.types import event_type_of
from libs.retry import RetryPolicy
from services.registry.convert import evaluation_of, prediction_of
from services.registry.core import Registry
from services.registry.domain import CHAMPION, ModelKey, PredictionEntry

log = logging.getLogger(__name__)
PREDICTION_TYPE = event_type_of(gateway_events.PredictionLogged)


class RegistryEvents:
    """The handler of ``libs.bus.EventConsumer`` for verdicts and rollback requests."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def handle(self, event: Event[Message]) -> None:
        payload = event.payload
        if isinstance(payload, evaluator_events.ModelEvaluated):
            outcome = await asyncio.to_thread(
                self._registry.apply_evaluation,
                evaluation_of(payload),
                event_id=event.meta.event_id,
                source=event.topic,
            )
            log.info(
                "evaluation %s of %s: recorded=%s promoted=%s status=%s",
                payload.report_id,
                outcome.version.key,
                outcome.recorded,
                outcome.promoted,
                outcome.version.status.value,
            )
        elif isinstance(payload, monitor_events.RollbackRequested):
            use_case = payload.use_case or payload.model.use_case
            result = await asyncio.to_thread(
                self._registry.rollback,
                ModelKey(use_case, payload.model.model_name),
                None,
                alias=payload.alias or CHAMPION,
                reason=payload.reason or "monitor alarm",
                evidence=[payload.request_id, *payload.evidence_ids],
                only_if_current=payload.model.version,
                event_id=event.meta.event_id,
                source=event.topic,
            )
            if result is not None:
                log.info(
                    "rolled back %s/%s %s from v%d to v%d",
                    use_case,
                    payload.model.model_name,
                    payload.alias or CHAMPION,
                    result.previous_version,
                    result.alias.version if result.alias else 0,
                )


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
