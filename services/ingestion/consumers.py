"""The raw-topic pipeline: consume a batch, decide every record, store, publish, commit — atomically.

Raw producers are outside clients that send plain JSON (or a protobuf Record) with no
``aif-*`` headers, so this reads raw topics with aiokafka directly rather than with
:class:`libs.bus.EventConsumer`'s typed decoding, and keeps its promises:

- per-record isolation: decoding and checking never raise (see :mod:`services.ingestion.records`), so a
  malformed record becomes a dead letter and the consumer carries on;
- nothing silently dropped: every polled record leaves as an accepted record or a
  dead letter, in the same transaction that commits its offset;
- exactly once in the records topic (for ``read_committed`` readers) and in the raw
  dataset: one Kafka transaction per poll; dataset files are staged before it and
  published after it, and reconciled against committed offsets when partitions are
  assigned (see :mod:`services.ingestion.store`).

For each poll: decide every record → stage accepted ones as parquet → one
transaction with the records, the dead letters, the quality windows counting them and
the consumed offsets → publish the dataset version. A failed transaction is aborted, the staged files
deleted and the batch read again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import IllegalStateError
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from libs.bus import compression
from libs.bus.lag import ConsumerLag, Progress
from libs.retry import RetryPolicy
from libs.telemetry import context_from_headers, headers_with_context
from services.ingestion import convert, decode, violations
from services.ingestion.publisher import (
    TRACE_HEADERS,
    Fatal,
    Outgoing,
    TransactionalPublisher,
    accepted_message,
    rejected_message,
)
from services.ingestion.quality import Counted, QualityTracker, WindowState
from services.ingestion.records import Outcome, UseCaseIngestor
from services.ingestion.store import DataFile, RawDataset, kafka_file_name

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("aifactory.ingestion")


# A batch whose transaction fails (the broker or the disk, never a record: records cannot
# fail) is read again after a pause that grows 0.5, 1, 2 ... 15 s, jittered; after 12
# failed rounds in a row or 120 s the error ends the pipeline, so the service stops
# serving and its supervisor restarts it, rather than spinning behind SERVING forever.
# Polling goes on between rounds, so the group keeps the member meanwhile.
MAX_TRACE_HEADER = 512
BATCH_RETRY = RetryPolicy(attempts=12, initial_s=0.5, max_s=15.0, jitter_s=0.5, deadline_s=120.0)
# How often the watchdog judges whether the pipeline is stalled (see RawPipeline.run).
WATCH_INTERVAL_S = 1.0
# How long a stalled loop may take to give way once cancelled, before the error is raised anyway.
CANCEL_GRACE_S = 10.0


@dataclass
class _Part:
    """One source partition's share of a poll."""

    tp: TopicPartition
    ingestor: UseCaseIngestor
    records: list[ConsumerRecord]
    outcomes: list[Outcome]


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, pipeline: RawPipeline) -> None:
        self._pipeline = pipeline

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Let the batch in flight commit before the partitions move to another member.
        async with self._pipeline._batch_lock:
            pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._pipeline._reconcile(assigned)


class RawPipeline:
    """Consumes the raw topics of the use cases in ``ingestors`` (raw topic → ingestor)."""

    def __init__(
        self,
        bootstrap_servers: str,
        ingestors: Mapping[str, UseCaseIngestor],
        dataset: RawDataset,
        quality: QualityTracker,
        publisher: TransactionalPublisher,
        *,
        group_id: str,
        records_topic: str,
        dead_letter_topic: str,
        instance_id: str | None = None,
        quality_state: WindowState | None = None,
        max_batch: int = 2000,
        retry_backoff_s: float = BATCH_RETRY.initial_s,
        kafka_options: Mapping[str, Any] | None = None,
        # The caps of libs.bus.compression, for the whole process (None: as they are).
        max_batch_bytes: int | None = None,
        max_record_bytes: int | None = None,
        # No offset committed for this long while records wait: the pipeline is stuck and
        # ends (the service exits; its supervisor restarts it). 0: never judged.
        stall_timeout_s: float = 60.0,
    ) -> None:
        self.group_id = group_id
        # Before the consumer exists: a compressed batch or record past these caps reaches
        # _process as a SkippedRecord, never inflated whole, and is dead-lettered.
        compression.install(max_batch_bytes, max_record_bytes)
        # Lag of the group on the raw topics it consumes (aif.bus.consumer.lag), counted from
        # their start until the first commit; it also tells whether the loop has stalled.
        self._lag = ConsumerLag(
            bootstrap_servers,
            group_id,
            topics=ingestors,
            kafka_options=kafka_options,
            from_start=True,
            progress=Progress(stall_timeout_s),
            owned=lambda: self._consumer.assignment(),
        )
        # When the batch in flight started (loop time), for the stall error.
        self._batch_since: float | None = None
        self._ingestors = dict(ingestors)
        self._dataset = dataset
        self._quality = quality
        self._quality_state = quality_state
        self._publisher = publisher
        self.publisher = publisher
        self._records_topic = records_topic
        self._dlq_topic = dead_letter_topic
        self._max_batch = max_batch
        # retry_backoff_s: the policy's first wait (tests shorten it).
        self._backoff = replace(BATCH_RETRY, initial_s=retry_backoff_s).backoff("ingesting a batch")
        self._stopping = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self._listener = _Rebalance(self)
        self._started = False
        self.assigned = asyncio.Event()
        self.processed = 0
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            client_id=f"ingestion-{group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Static membership: a restarted instance takes its partitions back at once
            # instead of waiting for the dead one's session to time out.
            group_instance_id=instance_id,
            # Raw producers may write transactionally; never ingest what they aborted.
            isolation_level="read_committed",
            **(kafka_options or {}),
        )

    async def stop(self) -> None:
        """Finish the batch in flight, then let :meth:`run` return."""
        self._stopping.set()

    async def add(self, topic: str, ingestor: UseCaseIngestor) -> None:
        """Consume ``topic`` with ``ingestor`` from now on (a use case applied while running;
        a new version of one swaps its ingestor between two batches)."""
        async with self._batch_lock:
            new = topic not in self._ingestors
            self._ingestors[topic] = ingestor
            if new and self._started:
                self._subscribe()

    async def drop(self, topic: str) -> None:
        """Stop consuming ``topic`` (a retired use case): its records wait in the topic, from
        the committed offset, should the use case come back."""
        async with self._batch_lock:
            if self._ingestors.pop(topic, None) is not None and self._started:
                self._subscribe()

    def _subscribe(self) -> None:
        # Not incremental: the whole list, one rebalance of the group.
        self._lag.set_topics(self._ingestors)
        if self._ingestors:
            self._consumer.subscribe(list(self._ingestors), listener=self._listener)
        else:
            self._consumer.unsubscribe()

    async def run(self) -> None:
        """Take over the transactional id, join the group, and process until :meth:`stop`."""
        await self._publisher.start()  # before reading offsets: settles what a predecessor left open
        try:
            if self._ingestors:
                self._subscribe()
            await self._consumer.start()
            self._started = True
            loop = asyncio.get_running_loop()
            lag = loop.create_task(self._lag.run(), name="ingestion-consumer-lag")
            try:
                await self._watched(loop.create_task(self._loop(), name="ingestion-loop"))
            finally:
                lag.cancel()
                await asyncio.gather(lag, return_exceptions=True)
                await self._consumer.stop()
        finally:
            await self._publisher.stop()

    async def _watched(self, work: asyncio.Task[None]) -> None:
        """Await ``work`` (the loop); raise :class:`Fatal` instead should it stall.

        A stall is what the retry policy cannot see: an await that never returns (a write
        to the broker or the disk that hangs), or a consumer that stops fetching while
        records wait. Either way no offset moves, which the group's lag shows from outside.
        """
        while not work.done():
            await asyncio.wait({work}, timeout=WATCH_INTERVAL_S)
            # While batches fail the retry policy, not the watchdog, decides how long they may.
            if work.done() or self._backoff.failures or self._stopping.is_set():
                continue
            reason = await self._lag.stalled()
            if reason is None:
                continue
            if self._batch_since is not None:
                age = asyncio.get_running_loop().time() - self._batch_since
                reason += f"; a batch in flight for {age:.0f}s"
            work.cancel()
            with contextlib.suppress(BaseException):  # it is being abandoned
                await asyncio.wait_for(work, CANCEL_GRACE_S)
            raise Fatal(f"ingestion pipeline stalled: {reason}")
        work.result()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            if not self._ingestors:
                # No use case yet (or all retired): nothing is subscribed.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 0.2)
                continue
            batches = await self._consumer.getmany(timeout_ms=200, max_records=self._max_batch)
            if not batches:
                continue
            pause = 0.0
            async with self._batch_lock:
                # A use case retired since the poll: its records stay in the topic.
                batches = {tp: records for tp, records in batches.items() if tp.topic in self._ingestors}
                if not batches:
                    continue
                self._batch_since = asyncio.get_running_loop().time()
                try:
                    await self._process(batches)
                    self._backoff.succeeded()
                except Fatal:
                    raise
                except Exception as exc:  # noqa: BLE001 - a broker hiccup: the batch is read again
                    pause = self._backoff.failed(exc)  # raises exc once the policy is spent
                    log.exception("batch failed; reading it again in %.1fs", pause)
                    for tp, records in batches.items():
                        with contextlib.suppress(
                            IllegalStateError
                        ):  # revoked meanwhile: its new owner reads it
                            self._consumer.seek(tp, records[0].offset)
                finally:
                    self._batch_since = None
            if pause:
                # Outside the batch lock: a rebalance meanwhile need not wait for the pause.
                await asyncio.sleep(pause)

    async def _reconcile(self, assigned: Sequence[TopicPartition]) -> None:
        # Under the batch lock: aiokafka may already fetch for the new assignment while this
        # runs, and a batch staged meanwhile would look like a crash leftover. Under the
        # dataset lock: gRPC pushes publish versions too.
        async with self._batch_lock, self._dataset.lock:
            for tp in assigned:
                ingestor = self._ingestors.get(tp.topic)
                if ingestor is None:
                    continue
                committed = await self._consumer.committed(tp)
                await asyncio.to_thread(
                    self._dataset.reconcile, ingestor.usecase.name, tp.topic, tp.partition, committed or 0
                )
        self.assigned.set()

    async def _process(self, batches: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        now = datetime.now(UTC)
        count = sum(len(records) for records in batches.values())
        with _tracer.start_as_current_span(
            "ingest batch",
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.consumer.group.name": self.group_id,
                "messaging.batch.message_count": count,
            },
        ):
            parts: list[_Part] = []
            for tp, records in batches.items():
                ingestor = self._ingestors[tp.topic]
                outcomes = [
                    _skipped(r, f"kafka:{tp.topic}:{tp.partition}:{r.offset}")
                    if isinstance(r, compression.SkippedRecord)
                    else ingestor.from_bytes(
                        r.value or b"",
                        decode.media_type(_header(r, "content-type")),
                        f"kafka:{tp.topic}:{tp.partition}:{r.offset}",
                        now,
                    )
                    for r in records
                ]
                parts.append(_Part(tp, ingestor, records, outcomes))
            await self._publish(parts, now)
        self.processed += count

    async def _publish(self, parts: list[_Part], now: datetime) -> None:
        trace_headers = headers_with_context()
        ingested_at = convert.timestamp(now)
        async with self._dataset.lock:
            staged: dict[str, list[DataFile]] = {}
            try:
                for p in parts:
                    accepted = [(o, r) for o, r in zip(p.outcomes, p.records, strict=True) if o.accepted]
                    if not accepted:
                        continue
                    name = kafka_file_name(
                        p.tp.topic, p.tp.partition, p.records[0].offset, p.records[-1].offset
                    )
                    files = await asyncio.to_thread(
                        self._dataset.stage,
                        p.ingestor.usecase.name,
                        [o for o, _ in accepted],
                        [f"{r.topic}/{r.partition}/{r.offset}" for _, r in accepted],
                        now,
                        name,
                    )
                    staged.setdefault(p.ingestor.usecase.name, []).extend(files)
                refs = {
                    uc: convert.dataset_ref(uc, self._dataset.next_version(uc, files), self._dataset.uri(uc))
                    for uc, files in staged.items()
                }
                messages = [
                    self._message(p, o, r, refs, ingested_at, trace_headers)
                    for p in parts
                    for o, r in zip(p.outcomes, p.records, strict=True)
                ]
                counted = self._count(parts)
                if self._quality_state is not None:
                    messages += [self._quality_state.message(c.use_case, c.window) for c in counted]
                offsets = {p.tp: p.records[-1].offset + 1 for p in parts}
                await self._publisher.commit(messages, offsets, self.group_id)
            except BaseException:
                for uc, files in staged.items():
                    self._dataset.discard(uc, files)
                raise
            self._quality.apply(counted)
            for uc, files in staged.items():
                self._dataset.publish(uc, files)

    def _count(self, parts: list[_Part]) -> list[Counted]:
        """The poll's outcomes counted into copies of their use cases' quality windows."""
        outcomes: dict[str, list[Outcome]] = {}
        for p in parts:
            outcomes.setdefault(p.ingestor.usecase.name, []).extend(p.outcomes)
        return [self._quality.count(uc, batch) for uc, batch in outcomes.items()]

    def _message(
        self,
        part: _Part,
        outcome: Outcome,
        record: ConsumerRecord,
        refs: Mapping[str, Any],
        ingested_at: Any,
        batch_trace: list[tuple[str, bytes]],
    ) -> Outgoing:
        ingestor = part.ingestor
        uc = ingestor.usecase.name
        trace_headers = _record_trace(record, batch_trace)
        if outcome.accepted:
            event = convert.accepted(
                uc, outcome, schema_version=ingestor.schema_version, dataset=refs[uc], ingested_at=ingested_at
            )
            return accepted_message(self._records_topic, event, trace_headers)
        event = convert.rejected(
            uc,
            outcome,
            original=record.value or b"",
            content_type=decode.media_type(_header(record, "content-type")),
            schema_version=ingestor.schema_version,
            rejected_at=ingested_at,
            source=(record.topic, record.partition, record.offset),
            privacy=ingestor.privacy,
        )
        return rejected_message(
            self._dlq_topic, event, key=record.key, group=self.group_id, trace=trace_headers
        )


def _record_trace(record: ConsumerRecord, batch_trace: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The trace context a record carries onward. A producer's own wins: its trace then runs
    through ingestion, in a span of ingestion's (linked to the batch's span), whose context
    goes on with the record. A record without one carries the batch span's."""
    # A producer's header is bounded before the trace parser (regular expressions) sees it;
    # a longer one is not a trace context (W3C caps tracestate at 512 characters).
    own = [
        (k, v) for k, v in (record.headers or ()) if k in TRACE_HEADERS and v and len(v) <= MAX_TRACE_HEADER
    ]
    if not own:
        return batch_trace
    batch = trace.get_current_span().get_span_context()
    span = _tracer.start_span(
        f"ingest {record.topic}",
        context=context_from_headers(own),
        kind=SpanKind.CONSUMER,
        links=[Link(batch)] if batch.is_valid else None,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
        },
    )
    span.end()
    return headers_with_context(trace.set_span_in_context(span))


def _skipped(record: compression.SkippedRecord, record_id: str) -> Outcome:
    """The rejection of a batch or record the consumer skipped unread (past a decompression
    cap, or in a codec it cannot read): the reason names the cap and the offsets; its dead
    letter carries no payload (there is none: it was never inflated)."""
    code = violations.TOO_LARGE if record.error == compression.TOO_LARGE else violations.PARSE
    return Outcome(record_id, [violations.Violation("", code, record.reason)])


def _header(record: ConsumerRecord, name: str) -> bytes | None:
    for key, value in record.headers or ():
        if key.lower() == name:
            return value
    return None
