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

Accepted records bound for one partition go out together, up to ``records_per_message``
in one ``RecordAcceptedBatch`` message: the feature store's cost per Kafka message is
then paid once per batch instead of once per record. The partition is still chosen per
record, by its entity key, so a batch only holds records that would have shared it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from google.protobuf.message import Message

from aifactory.ingestion.v1 import events_pb2
from libs.bus import batches
from libs.bus import headers as h
from libs.bus.partitions import partitions_for
from libs.bus.types import event_type_of, schema_version_of

log = logging.getLogger(__name__)

PRODUCER = "ingestion"
ACCEPTED_TYPE = event_type_of(events_pb2.RecordAccepted)
BATCH_TYPE = event_type_of(events_pb2.RecordAcceptedBatch)
REJECTED_TYPE = event_type_of(events_pb2.RecordRejected)
EVENT_SCHEMA = schema_version_of(events_pb2.RecordAccepted)
TRACE_HEADERS = ("traceparent", "tracestate")


class Fatal(Exception):
    """The producer can no longer be used (fenced, or a transaction could not be aborted)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]
    # Set on accepted records only (their id and use case): these may share a batch message.
    record_id: str | None = None
    use_case: str = ""


# A batch message stays well under the broker's default limit (1 MiB), whatever the records.
MAX_BATCH_BYTES = 512 * 1024


@functools.lru_cache(maxsize=256)
def _fixed(event_type: str, use_case: str) -> tuple[tuple[str, bytes], ...]:
    return (
        (h.EVENT_TYPE, event_type.encode()),
        (h.SCHEMA_VERSION, EVENT_SCHEMA.encode()),
        (h.USE_CASE, use_case.encode()),
        (h.PRODUCER, PRODUCER.encode()),
        (h.CONTENT_TYPE, h.PROTOBUF.encode()),
    )


def _meta(event_type: str, event_id: str, use_case: str, now_ms: int) -> list[tuple[str, bytes]]:
    """The standard event headers (as :meth:`libs.bus.EventMeta.to_headers` writes them)."""
    return [
        (h.EVENT_ID, event_id.encode()),
        *_fixed(event_type, use_case),
        (h.PRODUCED_AT, str(now_ms).encode()),
    ]


def accepted_message(
    topic: str, event: events_pb2.RecordAccepted, trace: Sequence[tuple[str, bytes]] = ()
) -> Outgoing:
    """Key ``<use case>/<entity id>``: one entity's records stay in one partition, in order."""
    record = event.record
    headers = _meta(ACCEPTED_TYPE, record.record_id, record.use_case, int(time.time() * 1000))
    return Outgoing(
        topic,
        event.SerializeToString(),
        f"{record.use_case}/{record.entity_id}".encode(),
        headers + list(trace),
        record.record_id,
        record.use_case,
    )


def accepted_in(
    value: bytes | None, headers: Sequence[tuple[str, bytes]] | None
) -> list[events_pb2.RecordAccepted]:
    """The accepted records a records-topic message holds: one, or a RecordAcceptedBatch's, in order."""
    event_type = next((v for k, v in headers or () if k == h.EVENT_TYPE), b"").decode()
    if event_type == BATCH_TYPE:
        return list(events_pb2.RecordAcceptedBatch.FromString(value or b"").records)
    return [events_pb2.RecordAccepted.FromString(value or b"")]


def batched(
    messages: Sequence[Outgoing], per_message: int, max_bytes: int = MAX_BATCH_BYTES
) -> list[Outgoing]:
    """``messages`` (all bound for one partition, in order) with runs of accepted records of one
    use case packed into ``RecordAcceptedBatch`` messages of at most ``per_message`` records.

    Order is kept: anything else (a dead letter) ends the run before it. A run of one record,
    or a record too big to share a message, goes alone as a plain ``RecordAccepted``. The batch's
    event id is a hash of its record ids (the same records make the same event); its trace
    context is its first record's.
    """
    out: list[Outgoing] = []
    run: list[Outgoing] = []
    size = 0

    def close() -> None:
        nonlocal size
        if len(run) == 1:
            out.append(run[0])
        elif run:
            first = run[0]
            ids = "\n".join(m.record_id or "" for m in run)
            event_id = "batch:" + hashlib.sha256(ids.encode()).hexdigest()[:32]
            trace = [(k, v) for k, v in first.headers if k in TRACE_HEADERS]
            headers = _meta(BATCH_TYPE, event_id, first.use_case, int(time.time() * 1000))
            headers.append((h.BATCH_SIZE, str(len(run)).encode()))
            out.append(Outgoing(first.topic, batches.pack([m.value for m in run]), None, headers + trace))
        run.clear()
        size = 0

    for m in messages:
        if m.record_id is None or per_message <= 1:
            close()
            out.append(m)
            continue
        framed = batches.framed_size(m.value)
        if run and (m.use_case != run[0].use_case or len(run) >= per_message or size + framed > max_bytes):
            close()
        run.append(m)
        size += framed
    close()
    return out


def event_message(topic: str, event: Message, *, event_id: str, use_case: str, key: str | None) -> Outgoing:
    """Any other event of ingestion's (a quality report), with the standard headers, to be
    published in a transaction."""
    meta = h.EventMeta.new(event_type_of(event), schema_version_of(event), use_case, PRODUCER, event_id)
    return Outgoing(topic, event.SerializeToString(), key.encode() if key else None, meta.to_headers())


def rejected_message(
    topic: str,
    event: events_pb2.RecordRejected,
    *,
    key: bytes | None,
    group: str,
    trace: Sequence[tuple[str, bytes]] = (),
) -> Outgoing:
    source = (
        f"{event.source_topic}/{event.source_partition}/{event.source_offset}"
        if event.source_topic
        else "grpc"
    )
    event_id = f"rejected:{source}" if event.source_topic else f"rejected:{event.record_id}"
    reason = "; ".join(f"{v.code}: {v.message}" for v in event.violations)
    headers = _meta(REJECTED_TYPE, event_id, event.use_case, int(time.time() * 1000)) + [
        (h.DLQ_REASON, reason.encode("utf-8", "replace")[:4096]),
        (h.DLQ_ERROR, b"contract"),
        (h.DLQ_SOURCE, source.encode()),
        (h.DLQ_GROUP, group.encode()),
    ]
    return Outgoing(topic, event.SerializeToString(), key, headers + list(trace))


class TransactionalPublisher:
    """One transactional producer; :meth:`commit` publishes a batch atomically."""

    def __init__(
        self,
        bootstrap_servers: str,
        transactional_id: str,
        *,
        kafka_options: Mapping[str, Any] | None = None,
        linger_ms: int = 5,
        records_per_message: int = 1,
    ) -> None:
        self.transactional_id = transactional_id
        self.records_per_message = records_per_message
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=f"{PRODUCER}-{transactional_id}",
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            max_batch_size=256 * 1024,
            **(kafka_options or {}),
        )
        self._lock = asyncio.Lock()
        self._partitioner = DefaultPartitioner()
        self._started = False

    async def start(self) -> None:
        """Connect and take over the transactional id.

        Returns only once the broker has completed whatever a previous holder of the id
        left open (committed or aborted), so offsets read afterwards are settled.
        """
        if self._started:
            return
        await self._producer.start()
        await self._producer.begin_transaction()  # waits for the producer id (fencing done)
        await self._producer.abort_transaction()
        self._started = True

    async def stop(self) -> None:
        await self._producer.stop()

    async def commit(
        self,
        messages: Sequence[Outgoing],
        offsets: Mapping[TopicPartition, int] | None = None,
        group_id: str = "",
    ) -> None:
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
        for topic in dict.fromkeys(m.topic for m in messages):
            parts = sorted(await self._producer.partitions_for(topic))
            mine = [m for m in messages if m.topic == topic]
            # Every key of the topic hashed in one pass; a message without a key goes where
            # the default partitioner sends those (a random partition).
            hashed = iter(partitions_for([m.key for m in mine if m.key is not None], parts))
            for m in mine:
                partition = next(hashed) if m.key is not None else self._partitioner(None, parts, parts)
                by_partition.setdefault((topic, partition), []).append(m)
        futures = []
        for (topic, partition), batch_messages in by_partition.items():
            batch_messages = batched(batch_messages, self.records_per_message)
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
            raise Fatal(
                f"transaction of {self.transactional_id} could not be aborted "
                f"after {type(cause).__name__}: {exc}"
            ) from cause
