"""Publishing outcomes atomically: records and dead letters (and input offsets) in one Kafka transaction.

Downstream consumers read the records topic with ``isolation_level="read_committed"``,
so they see a batch's records only once its transaction has committed, together with
the input offsets it consumed: a crash before the commit aborts the whole batch and
it is processed again, a crash after it replays nothing. The transactional id is
stable per ingestion instance, so a restarted instance fences its dead predecessor
and aborts whatever that one left open.

Every message carries the standard event headers (``aif-event-id`` = record id for
accepted records, the idempotency key downstream); dead letters also carry the
``aif-dlq-*`` headers of :mod:`libs.bus.deadletter`.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from aifactory.ingestion.v1 import events_pb2
from libs.bus import headers as h
from libs.bus.types import event_type_of, schema_version_of

log = logging.getLogger(__name__)

PRODUCER = "ingestion"
ACCEPTED_TYPE = event_type_of(events_pb2.RecordAccepted)
REJECTED_TYPE = event_type_of(events_pb2.RecordRejected)
EVENT_SCHEMA = schema_version_of(events_pb2.RecordAccepted)


class Fatal(Exception):
    """The producer can no longer be used (fenced, or a transaction could not be aborted)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]


@functools.lru_cache(maxsize=256)
def _fixed(event_type: str, use_case: str) -> tuple[tuple[str, bytes], ...]:
    return ((h.EVENT_TYPE, event_type.encode()), (h.SCHEMA_VERSION, EVENT_SCHEMA.encode()),
            (h.USE_CASE, use_case.encode()), (h.PRODUCER, PRODUCER.encode()),
            (h.CONTENT_TYPE, h.PROTOBUF.encode()))


def _meta(event_type: str, event_id: str, use_case: str, now_ms: int) -> list[tuple[str, bytes]]:
    """The standard event headers (as :meth:`libs.bus.EventMeta.to_headers` writes them)."""
    return [(h.EVENT_ID, event_id.encode()), *_fixed(event_type, use_case),
            (h.PRODUCED_AT, str(now_ms).encode())]


def accepted_message(topic: str, event: events_pb2.RecordAccepted,
                     trace: Sequence[tuple[str, bytes]] = ()) -> Outgoing:
    """Key ``<use case>/<entity id>``: one entity's records stay in one partition, in order."""
    record = event.record
    headers = _meta(ACCEPTED_TYPE, record.record_id, record.use_case, int(time.time() * 1000))
    return Outgoing(topic, event.SerializeToString(), f"{record.use_case}/{record.entity_id}".encode(),
                    headers + list(trace))


def rejected_message(topic: str, event: events_pb2.RecordRejected, *, key: bytes | None, group: str,
                     trace: Sequence[tuple[str, bytes]] = ()) -> Outgoing:
    source = (f"{event.source_topic}/{event.source_partition}/{event.source_offset}"
              if event.source_topic else "grpc")
    event_id = f"rejected:{source}" if event.source_topic else f"rejected:{event.record_id}"
    reason = "; ".join(f"{v.code}: {v.message}" for v in event.violations)
    headers = _meta(REJECTED_TYPE, event_id, event.use_case, int(time.time() * 1000)) + [
        (h.DLQ_REASON, reason.encode("utf-8", "replace")[:4096]),
        (h.DLQ_ERROR, b"contract"),
        (h.DLQ_SOURCE, source.encode()),
        (h.DLQ_GROUP, group.encode()),
    ]
    return Outgoing(topic, event.SerializeToString(), key, headers + list(trace))


class TransactionalOutbox:
    """One transactional producer; :meth:`commit` publishes a batch atomically."""

    def __init__(self, bootstrap_servers: str, transactional_id: str, *,
                 kafka_options: Mapping[str, Any] | None = None, linger_ms: int = 5) -> None:
        self.transactional_id = transactional_id
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, client_id=f"{PRODUCER}-{transactional_id}",
            transactional_id=transactional_id, enable_idempotence=True, acks="all",
            linger_ms=linger_ms, max_batch_size=256 * 1024, **(kafka_options or {}))
        self._lock = asyncio.Lock()
        self._partitioner = DefaultPartitioner()

    async def start(self) -> None:
        """Connect and take over the transactional id.

        Returns only once the broker has completed whatever a previous holder of the id
        left open (committed or aborted), so offsets read afterwards are settled.
        """
        await self._producer.start()
        await self._producer.begin_transaction()  # waits for the producer id (fencing done)
        await self._producer.abort_transaction()

    async def stop(self) -> None:
        await self._producer.stop()

    async def commit(self, messages: Sequence[Outgoing],
                     offsets: Mapping[TopicPartition, int] | None = None, group_id: str = "") -> None:
        """Send ``messages`` and commit ``offsets`` for ``group_id`` in one transaction.

        On failure the transaction is aborted and the error re-raised (nothing was
        published); :class:`Fatal` when the producer cannot go on.
        """
        async with self._lock:
            await self._producer.begin_transaction()
            try:
                await self._send_all(messages)
                if offsets:
                    await self._producer.send_offsets_to_transaction(dict(offsets), group_id)
                await self._producer.commit_transaction()
            except BaseException as exc:
                await self._abort(exc)
                raise

    async def _send_all(self, messages: Sequence[Outgoing]) -> None:
        """Send in record batches per partition: a third of the cost of one ``send`` per message.

        Keys pick partitions with the default (murmur2) partitioner, as ``send`` and the
        Java client do, so one entity's records share a partition whoever produces them;
        order within a partition is the order of ``messages``.
        """
        by_partition: dict[tuple[str, int], list[Outgoing]] = {}
        partitions: dict[str, list[int]] = {}
        for m in messages:
            if m.topic not in partitions:
                partitions[m.topic] = sorted(await self._producer.partitions_for(m.topic))
            parts = partitions[m.topic]
            by_partition.setdefault((m.topic, self._partitioner(m.key, parts, parts)), []).append(m)
        futures = []
        for (topic, partition), batch_messages in by_partition.items():
            batch = self._producer.create_batch()
            for m in batch_messages:
                if batch.append(timestamp=None, key=m.key, value=m.value, headers=m.headers) is None:
                    futures.append(await self._producer.send_batch(batch, topic, partition=partition))
                    batch = self._producer.create_batch()  # the first record of a batch always fits
                    batch.append(timestamp=None, key=m.key, value=m.value, headers=m.headers)
            futures.append(await self._producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)

    async def _abort(self, cause: BaseException) -> None:
        try:
            await self._producer.abort_transaction()
        except Exception as exc:  # noqa: BLE001 - any failure here leaves the producer unusable
            raise Fatal(f"transaction of {self.transactional_id} could not be aborted "
                        f"after {type(cause).__name__}: {exc}") from cause
