"""Consuming typed events in a consumer group, committing only after the effect.

Delivery is at-least-once: offsets are committed after the handler has returned
for every event of a polled batch, so a crash before the commit replays those
events and handlers must be idempotent (keyed by ``meta.event_id``).

A batch message (``<Event>Batch``: one repeated field of ``<Event>``, such as ingestion's
``RecordAcceptedBatch``) is accepted wherever ``<Event>`` is, and its events are handled one
by one as if each had come alone: event id ``<batch event id>#<index>``, and a failing one
is dead-lettered alone, as an ``<Event>`` of its own.

What the handler's outcome does to an event:
- returns: done; committed with its batch.
- raises ``Unavailable`` (a dependency is down): retried in place under the consumer's
  :class:`~libs.retry.RetryPolicy` (bounded attempts and time, exponential backoff with
  jitter). What is done before it is committed first. While it waits the consumer keeps
  polling with every partition paused, so the group does not evict it (``getmany`` is
  what tells the coordinator the member is alive: ``max.poll.interval.ms``). When the
  policy is spent the event is dead-lettered with error ``retries-exhausted`` and the reason
  ("dependency unavailable after N attempts in S s: ..."), and the consumer carries on: one
  event never holds its partition for longer than the policy's deadline. A stop (or the
  partition moving to another member) mid-retry seeks back to the event: nothing is lost,
  nothing is committed past it.
- raises anything else, or the event cannot be decoded: the event goes to the
  dead-letter topic with the reason, and the consumer carries on.

A compressed batch (or a record) that would inflate past the caps of
:mod:`libs.bus.compression` never reaches the handler: it is dead-lettered, without payload,
with the reason naming the cap and its offsets, and committed past.

Errors are told apart by type only (``Unavailable`` or not), never by their text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from google.protobuf.message import DecodeError, Message
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from libs.bus.batches import member_headers
from libs.bus.compression import SkippedRecord, install
from libs.bus.deadletter import RETRIES_EXHAUSTED, DeadLetters
from libs.bus.headers import EVENT_TYPE, EventMeta
from libs.bus.lag import INTERVAL_S, ConsumerLag
from libs.bus.security import KafkaSecurity
from libs.bus.types import event_type_of, message_class
from libs.errors import Unavailable
from libs.retry import RetryPolicy
from libs.telemetry import context_from_headers

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("aifactory.bus")
_meter = metrics.get_meter("aifactory.bus")
_retries = _meter.create_counter(
    "aif.bus.consumer.retries",
    unit="{retry}",
    description="Events handled again after their handler raised Unavailable",
)
_dead_letters = _meter.create_counter(
    "aif.bus.consumer.dead_letters",
    unit="{event}",
    description="Events sent to the dead-letter topic, by error (retries-exhausted: Unavailable past the retry policy)",
)

# How long one event may wait on a dependency that is down before it is dead-lettered:
# at most 10 tries, none started more than 60 s after the first (waits 0.5, 1, 2, 4, 8,
# 15, 15 s, each plus up to 1 s of jitter: in practice 8 tries over about 50 s when each
# fails fast). That outlasts a restart of PostgreSQL, the broker or a peer service (seconds)
# while holding the partition for a minute at most; the consumer keeps polling meanwhile,
# so the bound is not tied to max.poll.interval.ms (300 s).
CONSUMER_RETRY = RetryPolicy(attempts=10, initial_s=0.5, max_s=15.0, jitter_s=1.0, deadline_s=60.0)
# getmany's wait while retrying: short, so a stop is seen promptly.
_POLL_S = 0.2

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Event(Generic[M]):
    """A decoded event and where it came from."""

    meta: EventMeta
    payload: M
    topic: str
    partition: int
    offset: int
    key: bytes | None


Handler = Callable[[Event[Message]], Awaitable[None]]


class _Undecodable(Exception):
    pass


class _Interrupted(Exception):
    """A retry wait ended early: the consumer is stopping or lost the partition."""


@dataclass(frozen=True)
class _Member:
    """One event of a batch message, shaped like the ConsumerRecord it came in (for dead letters)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def _batch_of(event_class: type[Message]) -> tuple[str, str] | None:
    """(type name, field name) of ``<Event>Batch`` when that contract exists: one repeated ``<Event>``."""
    name = f"{event_class.DESCRIPTOR.full_name}Batch"
    try:
        batch = message_class(name)
    except KeyError:
        return None
    fields = batch.DESCRIPTOR.fields
    if len(fields) != 1 or fields[0].message_type is not event_class.DESCRIPTOR or not fields[0].is_repeated:
        return None
    return name, fields[0].name


class EventConsumer:
    """Runs ``handler`` for each event of ``topics`` in consumer group ``group_id``.

    ``topics`` maps each topic to the event classes it may carry; an event of any
    other type is dead-lettered rather than handed to code that does not expect it.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        topics: Mapping[str, Sequence[type[Message]]],
        handler: Handler,
        dead_letters: DeadLetters,
        *,
        max_batch: int = 500,
        retry: RetryPolicy = CONSUMER_RETRY,
        auto_offset_reset: str = "earliest",
        security: KafkaSecurity | None = None,
        # read_committed: events of a producer's open or aborted transaction are never seen
        # (ingestion publishes records transactionally); the same as read_uncommitted for
        # producers without transactions.
        isolation_level: str = "read_committed",
        # How often the group's lag per topic is measured (aif.bus.consumer.lag); None: never.
        lag_interval_s: float | None = INTERVAL_S,
        # The service's caps (ConsumerSettings.kafka_max_batch_bytes, kafka_max_record_bytes)
        # for the whole process; None: as they are (the defaults unless set).
        max_batch_bytes: int | None = None,
        max_record_bytes: int | None = None,
    ) -> None:
        self.group_id = group_id
        self._lag = (
            None
            if lag_interval_s is None
            else ConsumerLag(bootstrap_servers, group_id, security, topics=topics, interval_s=lag_interval_s)
        )
        self._allowed = {t: {event_type_of(c) for c in classes} for t, classes in topics.items()}
        # Batch contracts of the accepted types, by topic: batch type → (member type, field).
        self._batches: dict[str, dict[str, tuple[str, str]]] = {}
        for t, classes in topics.items():
            for c in classes:
                found = _batch_of(c)
                if found is not None:
                    self._batches.setdefault(t, {})[found[0]] = (event_type_of(c), found[1])
                    self._allowed[t].add(found[0])
        self._handler = handler
        self._dlq = dead_letters
        self._max_batch = max_batch
        self._retry = retry
        self._stopping = asyncio.Event()
        # A compressed batch or record past the process's caps comes as a SkippedRecord.
        install(max_batch_bytes, max_record_bytes)
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            isolation_level=isolation_level,
            **(security.client_kwargs() if security else {}),
        )

    async def stop(self) -> None:
        """Ask :meth:`run` to finish its current batch, commit and return."""
        self._stopping.set()

    async def close(self) -> None:
        await self._consumer.stop()

    async def run(self) -> None:
        """Join the group and consume until :meth:`stop`; then leave the group.

        Every batch is committed once handled, so there is nothing left to commit here.
        """
        await self._consumer.start()
        lag = None if self._lag is None else asyncio.get_running_loop().create_task(self._lag.run())
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self._max_batch)
                for tp, records in batches.items():
                    await self._handle_partition(tp, records)
        finally:
            if lag is not None:
                lag.cancel()
                await asyncio.gather(lag, return_exceptions=True)
            await self.close()

    async def _handle_partition(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        for record in records:
            for unit in self._units(record):
                try:
                    await self._handle_retrying(tp, record.offset, unit)
                except _Interrupted:
                    # Not done: read it again (a batch's events already handled are handled
                    # again: at least once). On a stop the consumer closes without committing
                    # past it; a partition that moved is read by its new owner from the commit.
                    if tp in self._consumer.assignment():
                        self._consumer.seek(tp, record.offset)
                    return
        await self._commit(tp, records[-1].offset + 1)

    async def _handle_retrying(self, tp: TopicPartition, offset: int, unit: ConsumerRecord | _Member) -> None:
        """Handle ``unit`` (of the record at ``offset``), retrying ``Unavailable`` under the
        policy; dead-letter it when the policy is spent."""
        started = time.monotonic()
        attempts = 0

        async def wait(seconds: float) -> None:
            _retries.add(1, {"consumer.group": self.group_id, "topic": unit.topic})
            await self._wait_polling(tp, offset, seconds)

        try:
            async for attempt in self._retry.asynchronous(
                f"{self.group_id}: {unit.topic}/{unit.partition}@{unit.offset}", sleep=wait
            ):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    await self._handle_one(unit)
        except Unavailable as exc:
            elapsed = time.monotonic() - started
            await self._dead_letter(
                unit,
                f"dependency unavailable after {attempts} attempts in {elapsed:.1f}s: {exc}",
                RETRIES_EXHAUSTED,
            )

    async def _wait_polling(self, tp: TopicPartition, offset: int, seconds: float) -> None:
        """Wait ``seconds`` before the next attempt on the record at ``offset`` of ``tp``,
        polling all along with every partition paused, so the member stays in the group;
        :class:`_Interrupted` when stopping or when ``tp`` is no longer ours."""
        if self._stopping.is_set() or tp not in self._consumer.assignment():
            raise _Interrupted
        await self._commit(tp, offset)  # what is done before the record stays done
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                # Paused again each round: a rebalance meanwhile hands out fresh, unpaused
                # partitions.
                self._consumer.pause(*self._consumer.assignment())
                fetched = await self._consumer.getmany(timeout_ms=max(1, int(min(left, _POLL_S) * 1000)))
                for got, records in fetched.items():
                    # Only after a rebalance raced the pause: give them back to be read later.
                    self._consumer.seek(got, records[0].offset)
                if self._stopping.is_set() or tp not in self._consumer.assignment():
                    raise _Interrupted
        finally:
            self._consumer.resume(*self._consumer.paused())

    def _units(self, record: ConsumerRecord) -> Sequence[ConsumerRecord | _Member]:
        """The record itself, or each event of a batch message as a record of its own."""
        batches = self._batches.get(record.topic)
        if not batches:
            return [record]
        headers = [(k, v or b"") for k, v in record.headers or ()]
        batch_type = next((v for k, v in headers if k == EVENT_TYPE), b"").decode("utf-8", "replace")
        if batch_type not in batches:
            return [record]
        member_type, field = batches[batch_type]
        try:
            batch = message_class(batch_type).FromString(record.value or b"")
        except DecodeError:
            return [record]  # dead-lettered whole by _decode, with the reason
        return [
            _Member(
                record.topic,
                record.partition,
                record.offset,
                record.key,
                event.SerializeToString(),
                member_headers(headers, member_type, i),
            )
            for i, event in enumerate(getattr(batch, field))
        ]

    async def _commit(self, tp: TopicPartition, next_offset: int) -> None:
        await self._consumer.commit({tp: next_offset})

    def _decode(self, record: ConsumerRecord | _Member) -> Event[Message]:
        try:
            meta = EventMeta.from_headers(record.headers or ())
        except KeyError as exc:
            raise _Undecodable(f"missing header {exc.args[0]}") from None
        if meta.event_type not in self._allowed.get(record.topic, set()):
            raise _Undecodable(f"event type {meta.event_type!r} not accepted on {record.topic}")
        payload = message_class(meta.event_type)()
        try:
            payload.ParseFromString(record.value or b"")
        except DecodeError as exc:
            raise _Undecodable(f"payload is not a valid {meta.event_type}: {exc}") from None
        return Event(meta, payload, record.topic, record.partition, record.offset, record.key)

    async def _handle_one(self, record: ConsumerRecord | _Member) -> None:
        with _tracer.start_as_current_span(
            f"consume {record.topic}",
            context=context_from_headers(record.headers or ()),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.consumer.group.name": self.group_id,
                "messaging.kafka.offset": record.offset,
            },
        ) as span:
            if isinstance(record, SkippedRecord):
                span.set_status(Status(StatusCode.ERROR, record.error))
                await self._dead_letter(record, record.reason, record.error)
                return
            try:
                event = self._decode(record)
                span.set_attribute("messaging.message.id", event.meta.event_id)
                await self._handler(event)
            except Unavailable:
                raise
            except _Undecodable as exc:
                span.set_status(Status(StatusCode.ERROR, "undecodable"))
                await self._dead_letter(record, str(exc), "undecodable")
            except Exception as exc:  # noqa: BLE001 - a bad event must not stop the consumer
                log.exception("handler failed on %s@%d", record.topic, record.offset)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                await self._dead_letter(record, str(exc) or type(exc).__name__, type(exc).__name__)

    async def _dead_letter(self, record: ConsumerRecord | _Member, reason: str, error: str) -> None:
        await self._dlq.send(record, reason, error, self.group_id)
        _dead_letters.add(1, {"consumer.group": self.group_id, "topic": record.topic, "error": error})
