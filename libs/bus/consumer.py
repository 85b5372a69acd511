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
- raises ``Unavailable`` (a dependency is down): nothing is lost; the consumer
  backs off and retries the same event until it succeeds or the consumer stops.
- raises anything else, or the event cannot be decoded: the event goes to the
  dead-letter topic with the reason, and the consumer carries on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from google.protobuf.message import DecodeError, Message
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from libs.bus.batches import member_headers
from libs.bus.deadletter import DeadLetters
from libs.bus.headers import EVENT_TYPE, EventMeta
from libs.bus.security import KafkaSecurity
from libs.bus.types import event_type_of, message_class
from libs.errors import Unavailable
from libs.telemetry import context_from_headers

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("aifactory.bus")

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
        retry_backoff_s: float = 0.5,
        auto_offset_reset: str = "earliest",
        security: KafkaSecurity | None = None,
        # read_committed: events of a producer's open or aborted transaction are never seen
        # (ingestion publishes records transactionally); the same as read_uncommitted for
        # producers without transactions.
        isolation_level: str = "read_committed",
    ) -> None:
        self.group_id = group_id
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
        self._backoff = retry_backoff_s
        self._stopping = asyncio.Event()
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
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self._max_batch)
                for tp, records in batches.items():
                    await self._handle_partition(tp, records)
        finally:
            await self.close()

    async def _handle_partition(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        for record in records:
            for unit in self._units(record):
                while True:
                    try:
                        await self._handle_one(unit)
                        break
                    except Unavailable as exc:
                        # Commit what is done, then come back to this record after a pause (a
                        # batch's events already handled are handled again: at least once).
                        await self._commit(tp, record.offset)
                        log.warning("dependency unavailable, retrying %s@%d: %s", tp, record.offset, exc)
                        if self._stopping.is_set():
                            self._consumer.seek(tp, record.offset)
                            return
                        await asyncio.sleep(self._backoff)
        await self._commit(tp, records[-1].offset + 1)

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
            try:
                event = self._decode(record)
                span.set_attribute("messaging.message.id", event.meta.event_id)
                await self._handler(event)
            except Unavailable:
                raise
            except _Undecodable as exc:
                span.set_status(Status(StatusCode.ERROR, "undecodable"))
                await self._dlq.send(record, str(exc), "undecodable", self.group_id)
            except Exception as exc:  # noqa: BLE001 - a bad event must not stop the consumer
                log.exception("handler failed on %s@%d", record.topic, record.offset)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                await self._dlq.send(
                    record, str(exc) or type(exc).__name__, type(exc).__name__, self.group_id
                )
