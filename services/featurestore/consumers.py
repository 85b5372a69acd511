"""The feature store's Kafka consumers: a faust app (the stream processor) that turns
records into features and feedback into labels.

Topology (one faust app, id = ``settings.app_id``, at-least-once):

    records topic (RecordAcceptedBatch, no key, each record in the partition of its entity;
                   or RecordAccepted, key <use_case>/<entity_id>)
      └─ [agent "split": each record on its own, key <use_case>/<entity_id>
           → <app_id>-<records topic>-entity-repartition]  (only when the records topic's
                                                              partitions differ from the table's)
      └─ agent "features": take_events(batch_max, batch_within), cut at batch_max records
                                                             (micro-batches)
           → table "entity-state" (changelog <app_id>-entity-state-changelog): per entity, the
             (event time, values) entries within the longest window + recent record ids
    feedback topic (FeedbackRecorded)
      └─ agent "labels": take_events → labels dataset
    both → dead-letter topic (reason headers); table "dead-lettered" remembers which

Per micro-batch (:class:`BatchPipeline`): the agent computes every record's features on
copies of the entity states (:class:`~services.featurestore.batch.RecordProcessor`) and
hands the batch to a finisher, which dead-letters bad messages, writes rows online
(Feast, in a child process) + offline (parquet) — durably — and only then stores the
new states in the table and acks the batch's events (their acks are held until then).
The agent computes the next batch meanwhile, on the states of the batch in flight.
faust flushes the producer (changelog, repartition forwards) before it commits offsets.
So, after a crash at any point:

- writes done, states not stored: the replay recomputes the same rows; the online
  write overwrites with the same values and the offline datasets skip known record ids;
- states stored, offsets not committed: the replayed records are in their entity's
  state (record ids) and are skipped; replayed bad messages are in "dead-lettered".

Nothing is lost and nothing is counted twice. Kafka transactions from producers are
respected: the consumer reads with ``isolation_level=read_committed`` (faust only does
that in its exactly-once mode, whose open bugs we avoid).

A failure that is not about one message (the online store or the disk is gone after
``write_attempts`` tries, the faust app crashed) is fatal: ``on_fatal`` exits the
process so that its supervisor restarts it, and the restart resumes from the last commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import faust
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind

from aifactory.common.v1 import common_pb2
from aifactory.ingestion.v1 import events_pb2 as ingestion_events
from libs.bus import DeadLetters, EventPublisher, KafkaSecurity, Outgoing
from libs.bus import headers as h
from libs.bus.lag import ConsumerLag, Progress
from libs.features import feature_refs
from libs.retry import RetryPolicy
from libs.telemetry import Telemetry, context_from_headers
from libs.usecase import UseCase
from libs.usecase.catalogue import Catalogue
from services.featurestore import convert
from services.featurestore.batch import BatchOutcome, Incoming, RecordProcessor, batch_member
from services.featurestore.convert import RECORD_BATCH, decode_record_batch, header_map
from services.featurestore.domain import BadEvent, FeatureRow, state_key
from services.featurestore.faust_app import FeatureApp
from services.featurestore.settings import FeatureStoreSettings
from services.featurestore.store.writer import FeatureWriter

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("aifactory.featurestore")
# How long faust may take to stop before the process exits without it.
STOP_TIMEOUT_S = 8.0
# While the group rebalances or its tables recover, a stall is called after this many times
# stall_timeout_s.
REBALANCE_STALL_FACTOR = 5

UNDECODABLE_KEY = b"!undecodable"


class FatalError(Exception):
    """The stream cannot go on in this process (not the fault of one message)."""


# -- the stream -------------------------------------------------------------------------


def repartition_topic(settings: FeatureStoreSettings) -> str:
    """Where the split agent forwards records by entity (when the stream repartitions)."""
    return f"{settings.app_id}-{settings.records_topic}-entity-repartition"


def entity_key(key: bytes | None, value: bytes) -> bytes:
    """Repartition key of a lone record: ``<use_case>/<entity_id>``; never raises.

    The message key is used as it is when it has that form (ingestion keys records so);
    the stateful stage checks it against the payload. Otherwise the payload is read. A
    message that cannot be read is dead-lettered after the repartition, with its reason.
    """
    if isinstance(key, bytes) and b"/" in key:
        return key
    try:
        rec = ingestion_events.RecordAccepted.FromString(value).record
    except Exception:  # noqa: BLE001 - any undecodable payload
        return UNDECODABLE_KEY
    if not rec.use_case or not rec.entity_id:
        return UNDECODABLE_KEY
    return state_key(rec.use_case, rec.entity_id)


def split(item: Incoming) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """A records-topic message as lone records to repartition: (key, value, headers) each.

    A RecordAcceptedBatch becomes one RecordAccepted message per record, keyed by its
    entity; anything else (a lone record, an undecodable batch) is forwarded as it came,
    to be judged, and dead-lettered if need be, by the stateful stage.
    """
    if header_map(item.headers).get(h.EVENT_TYPE) != RECORD_BATCH:
        return [(entity_key(item.key, item.value or b""), item.value or b"", item.headers)]
    try:
        batch = decode_record_batch(item.value)
    except BadEvent:
        return [(UNDECODABLE_KEY, item.value or b"", item.headers)]
    out = []
    for index, event in enumerate(batch.records):
        member = batch_member(item, event, index)
        out.append((member.key or UNDECODABLE_KEY, member.value or b"", member.headers))
    return out


def record_count(event: Any) -> int:
    """Records in a message: a RecordAcceptedBatch says how many in a header; anything else is one."""
    for key, value in event.message.headers or ():
        if key == h.BATCH_SIZE:
            try:
                return max(1, int(value))
            except ValueError:
                return 1
    return 1


def chunks(events: Sequence[Any], max_records: int) -> list[Sequence[Any]]:
    """``events`` cut, in order and at message boundaries, into runs of about ``max_records`` records:
    a take of batch messages may hold far more records than one micro-batch should."""
    out: list[Sequence[Any]] = []
    start, count = 0, 0
    for i, event in enumerate(events):
        n = record_count(event)
        if count and count + n > max_records:
            out.append(events[start:i])
            start, count = i, 0
        count += n
    out.append(events[start:])
    return out


def dead_letter_key(item: Incoming) -> bytes:
    """Identity of a message across replays: its event id, or a hash of its key and bytes."""
    event_id = header_map(item.headers).get(h.EVENT_ID)
    if event_id:
        return b"e:" + event_id.encode()
    digest = hashlib.sha256((item.key or b"") + b"\0" + (item.value or b"")).hexdigest()[:32]
    return b"h:" + digest.encode()


def _refs(uc: UseCase) -> list[common_pb2.FeatureRef]:
    return [
        common_pb2.FeatureRef(use_case=uc.name, feature_view=c.view, name=c.name, version=c.version)
        for c in feature_refs(uc)
    ]


def _incoming(event: Any) -> Incoming:
    m = event.message
    headers = m.headers or []
    if isinstance(headers, dict):
        headers = list(headers.items())
    return Incoming(m.topic, m.partition, m.offset, m.key, m.value, [(k, v or b"") for k, v in headers])


@contextlib.contextmanager
def consumed_spans(items: Sequence[Incoming]) -> Iterator[list[SpanContext]]:
    """A CONSUMER span for each message that carries a trace (the producer's, through
    ingestion), open while the batch is computed; yields their contexts, for the write.

    faust hands messages over without their trace: it is read from each message's
    ``traceparent`` header here. Messages without one cost nothing.
    """
    spans = [
        _tracer.start_span(
            f"process {item.topic}",
            context=context_from_headers(item.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": item.topic,
                "messaging.destination.partition.id": str(item.partition),
                "messaging.kafka.offset": item.offset,
            },
        )
        for item in items
        if any(k == "traceparent" for k, _ in item.headers)
    ]
    try:
        yield [s.get_span_context() for s in spans if s.get_span_context().is_valid]
    finally:
        for span in spans:
            span.end()


def write_span(traced: Sequence[SpanContext], rows: int) -> contextlib.AbstractContextManager[Any]:
    """The span of a micro-batch's durable write, in the trace of its first traced message
    and linked to the others' (a batch serves many traces); none when no message was traced."""
    if not traced:
        return contextlib.nullcontext()
    return _tracer.start_as_current_span(
        "write features",
        context=trace.set_span_in_context(NonRecordingSpan(traced[0])),
        links=[Link(c) for c in traced[1:]],
        attributes={"aif.featurestore.rows": rows},
    )


class BatchPipeline:
    """Micro-batches in two stages: compute in the agent, then finish (durable effects) in order.

    The agent computes batch N+1 while batch N's writes are in flight, so faust's work
    and Feast's writes overlap. faust acks a take_events batch as soon as the agent's
    loop moves on; each event is therefore given an extra reference first
    (``message.incref()``) and its real ack comes from ``finish``, after the batch's
    effects are durable. An event whose batch never finishes is never acked, so it is
    consumed again after a restart. At most one batch waits behind the one finishing.
    """

    def __init__(self, on_fatal: Callable[[BaseException], None]) -> None:
        self._on_fatal = on_fatal
        self._last: asyncio.Task[None] | None = None
        self.stopping = False

    async def submit(
        self,
        events: Sequence[Any],
        compute: Callable[[Sequence[Any]], BatchOutcome],
        finish: Callable[[BatchOutcome], Awaitable[None]],
    ) -> None:
        for event in events:
            event.message.incref()
        if self.stopping:
            return  # held, never acked: replayed after the restart
        try:
            out = compute(events)
        except BaseException as exc:  # noqa: BLE001 - per-message errors are caught inside compute
            self._on_fatal(exc)
            raise
        previous = self._last
        self._last = asyncio.create_task(self._finish(previous, out, events, finish))
        if previous is not None:
            await asyncio.shield(previous)

    async def _finish(
        self,
        previous: asyncio.Task[None] | None,
        out: BatchOutcome,
        events: Sequence[Any],
        finish: Callable[[BatchOutcome], Awaitable[None]],
    ) -> None:
        if previous is not None:
            await asyncio.shield(previous)
        try:
            await finish(out)
        except BaseException as exc:
            # Exit before anything acks this batch: its effects are not (all) durable.
            self._on_fatal(exc)
            raise
        for event in events:
            event.ack()

    async def drain(self) -> None:
        """Stop taking batches; wait for those in flight to finish."""
        self.stopping = True
        while self._last is not None and not self._last.done():
            await asyncio.gather(self._last, return_exceptions=True)


class FeatureStream:
    """The faust app and its two agents, wired to the writer, dead letters and events."""

    def __init__(
        self,
        settings: FeatureStoreSettings,
        processor: RecordProcessor,
        writer: FeatureWriter,
        publisher: EventPublisher,
        *,
        datadir: str,
        telemetry: Telemetry,
        on_fatal: Callable[[BaseException], None],
        repartition: bool = True,
        catalogue: Catalogue | None = None,
    ) -> None:
        self._settings = settings
        # Asked to catch up when a batch names a use case the processor does not know yet.
        self._catalogue = catalogue
        # Off when the records topic is already partitioned like the state table (by the
        # entity key, same partitioner, same count): records are then consumed as they are.
        self.repartition = repartition
        self._processor = processor
        self._writer = writer
        self._publisher = publisher
        self._dlq = DeadLetters(publisher, settings.dead_letter_topic)
        self._on_fatal = on_fatal
        self._write_lock = asyncio.Lock()
        # The task running :meth:`run`, cancelled by :meth:`stop`.
        self._watchdog: asyncio.Task[Any] | None = None
        self._stopped = False
        self._records = BatchPipeline(on_fatal)
        self._labels = BatchPipeline(on_fatal)
        # States computed by batches not yet finished: the next batch builds on them.
        self._inflight: dict[bytes, tuple[Any, int]] = {}
        self._batch_seq = 0
        # Span contexts of the traced messages of each batch in flight (by seq), for its write.
        self._traced: dict[int, list[SpanContext]] = {}
        # Consumer-group lag of the faust app's group (libs.bus.lag), per topic; it also
        # tells whether the stream has stopped moving (see run). Every topic the group reads
        # counts, from its start until the first commit: a stream stuck from the start shows.
        self.lag = ConsumerLag(
            settings.kafka_bootstrap,
            settings.app_id,
            KafkaSecurity.from_settings(settings),
            topics=self._source_topics(settings, repartition),
            from_start=True,
            progress=Progress(settings.stall_timeout_s),
            owned=self._assigned,
        )
        meter = telemetry.meter
        self._m_records = meter.create_counter("aif.featurestore.records", description="records applied")
        self._m_dups = meter.create_counter(
            "aif.featurestore.duplicates", description="replayed records skipped"
        )
        self._m_dead = meter.create_counter(
            "aif.featurestore.dead_letters", description="messages dead-lettered"
        )
        self._m_batch = meter.create_histogram(
            "aif.featurestore.batch_write.duration", unit="s", description="time to write one micro-batch"
        )
        self._refs = {name: _refs(uc) for name, uc in processor.usecases.items()}
        brokers = [f"kafka://{b.strip()}" for b in settings.kafka_bootstrap.split(",") if b.strip()]
        self.app = FeatureApp(
            settings.app_id,
            broker=brokers,
            web_enabled=False,
            autodiscover=False,
            store="memory://",
            datadir=datadir,
            topic_partitions=settings.partitions,
            topic_replication_factor=1,
            processing_guarantee="at_least_once",
            broker_commit_interval=settings.commit_interval_s,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            table_standby_replicas=0,
            producer_linger=settings.producer_linger_ms / 1000,
            # Room for a whole micro-batch of forwards and changelog entries per partition:
            # with the default 16 kB, every few dozen sends wait for a produce round trip.
            producer_max_batch_size=256 * 1024,
            # group_by forwards each record as it came: faust's default cap (1,000,000 bytes) is
            # below the broker's (1 MiB), and a record between the two stalls the agent for good,
            # silently. Let the broker's own limit (it accepted the record once) decide.
            producer_max_request_size=4 * 1024 * 1024,
            # faust pauses fetching once this many events wait in a stream: room for a whole
            # micro-batch to gather while the one before it is written.
            stream_buffer_maxsize=max(4096, 2 * settings.batch_max),
            # Batches held at shutdown are never acked (they are consumed again after the
            # restart): faust must not wait for them before its final commit.
            stream_wait_empty=False,
            # A restarted worker rejoins once its killed predecessor's session expires.
            broker_session_timeout=settings.session_timeout_s,
            broker_heartbeat_interval=settings.session_timeout_s / 4,
            broker_credentials=_credentials(KafkaSecurity.from_settings(settings)),
        )
        self.app.on_agent_failure = self._agent_failed
        self._define()

    @staticmethod
    def _source_topics(settings: FeatureStoreSettings, repartition: bool) -> list[str]:
        """The topics the app's agents read (and commit on)."""
        names = [settings.records_topic, settings.feedback_topic]
        if repartition:
            names.append(repartition_topic(settings))
        return names

    async def _agent_failed(self, agent: Any, exc: BaseException) -> None:
        """An agent raised. faust would log it and start a new actor, dropping the events the
        dead one held (never acked, so the group's commits stop there for good): exit instead,
        and the restart replays them."""
        self._on_fatal(FatalError(f"agent {agent.name} failed: {exc!r}"))

    def _define(self) -> None:
        app, s = self.app, self._settings
        records = app.topic(s.records_topic, key_serializer="raw", value_serializer="raw")
        feedback = app.topic(s.feedback_topic, key_serializer="raw", value_serializer="raw")
        # use_partitioner: a changelog entry goes to the partition of its key's hash, which
        # is the partition group_by sent the entity to (same key bytes, same partitioner),
        # also when one micro-batch spans several partitions.
        # key_type=bytes: keys are stored raw (the very bytes group_by keyed the entity by);
        # values are plain JSON (EntityState.to_json()). A value_type faust cannot rebuild
        # (even ``dict``) makes its changelog recovery fail on every entry and never finish.
        self.table = app.Table(
            "entity-state", default=None, partitions=s.partitions, use_partitioner=True, key_type=bytes
        )
        # Messages already dead-lettered (by event id, else content hash): a replay after a
        # crash must not dead-letter them again. Bad messages are rare; the table stays small.
        self.dead = app.Table(
            "dead-lettered", default=None, partitions=s.partitions, use_partitioner=True, key_type=bytes
        )
        within = s.batch_within_ms / 1000

        source = records
        if self.repartition:
            source = app.topic(
                repartition_topic(s),
                partitions=s.partitions,
                key_serializer="raw",
                value_serializer="raw",
                internal=True,
            )

            async def split_records(stream: Any) -> None:
                # Forwarded sends are flushed before the offsets of what was split are committed.
                async for event in stream.events():
                    for key, value, headers in split(_incoming(event)):
                        await event.forward(source, key=key, value=value, headers=headers)

            app.agent(records, name=f"{s.app_id}-split")(split_records)

        async def features(stream: Any) -> None:
            async for events in stream.take_events(s.batch_max, within):
                await self._known(events)
                for chunk in chunks(events, s.batch_max):
                    await self._records.submit(chunk, self._compute_records, self._finish_records)

        async def labels(stream: Any) -> None:
            async for events in stream.take_events(s.batch_max, within):
                await self._known(events)
                await self._labels.submit(events, self._compute_feedback, self._commit)

        # Agent names carry the app id: two feature-store apps on one broker stay apart.
        app.agent(source, name=f"{s.app_id}-features")(features)
        app.agent(feedback, name=f"{s.app_id}-labels")(labels)

    def take_up(self, uc: UseCase) -> None:
        """Compute the features of a use case applied while running (its Feast view and
        datasets are ready by now: :meth:`FeatureStoreCore.take_up` ran first)."""
        self._refs[uc.name] = _refs(uc)
        self._processor.take_up(uc)

    def drop(self, name: str) -> None:
        """A retired use case: its records and outcomes are dead-lettered from now on."""
        self._processor.drop(name)

    async def _known(self, events: Sequence[Any]) -> None:
        """Records of a use case applied a moment ago can arrive before this service has
        taken it up (ingestion was quicker): wait for the catalogue to catch up first, so
        they are computed rather than dead-lettered as of an unknown use case."""
        if self._catalogue is None:
            return
        names = {header_map(_incoming(e).headers).get(h.USE_CASE, "") for e in events}
        if any(name and name not in self._processor.usecases for name in names):
            await self._catalogue.sync(timeout_s=self._settings.usecase_wait_s)

    def _load(self, key: bytes) -> Any:
        """An entity's state: the newest computed by a batch still in flight, else the table's."""
        pending = self._inflight.get(key)
        return pending[0] if pending is not None else self.table.get(key)

    def _compute_records(self, events: Sequence[Any]) -> BatchOutcome:
        items = [_incoming(e) for e in events]
        with consumed_spans(items) as traced:
            out = self._processor.records(items, self._load)
        self._batch_seq += 1
        out.seq = self._batch_seq
        if traced:
            self._traced[out.seq] = traced
        for key, state in out.states.items():
            self._inflight[key] = (state.to_json(), out.seq)
        return out

    def _compute_feedback(self, events: Sequence[Any]) -> BatchOutcome:
        return self._processor.feedback([_incoming(e) for e in events])

    async def _finish_records(self, out: BatchOutcome) -> None:
        with write_span(self._traced.pop(out.seq, []), len(out.rows)):
            await self._commit(out)
        for key, state in out.states.items():
            self.table[key] = state.to_json()
            if self._inflight.get(key, (None, -1))[1] == out.seq:
                del self._inflight[key]
        self._m_records.add(len(out.rows))
        if out.duplicates:
            self._m_dups.add(out.duplicates)
            log.info("skipped %d replayed records", out.duplicates)

    async def _commit(self, out: BatchOutcome) -> None:
        """Make a batch's effects durable: dead letters, rows and labels, FeaturesWritten."""
        await self._dead_letter(out)
        if out.rows or out.labels:
            await self._write(out)
        if out.rows and self._settings.features_written_topic:
            await self._publisher.publish_many(self._features_written(out.rows))

    async def _dead_letter(self, out: BatchOutcome) -> None:
        """Send each bad message to the dead-letter topic once, and remember it durably.

        The dead letter is sent first (never lost), then marked in "dead-lettered" and the
        mark flushed at once: only a crash inside those milliseconds sends it twice on
        replay. Dead letters keep the original ``aif-event-id`` for strict consumers.
        """
        sent: list[bytes] = []
        for dead in out.dead:
            key = dead_letter_key(dead.item)
            if key in sent or self.dead.get(key) is not None:
                continue  # a replay: dead-lettered before the restart
            await self._dlq.send(dead.item, dead.reason, dead.error, self._settings.app_id)  # type: ignore[arg-type]
            sent.append(key)
        if sent:
            for key in sent:
                self.dead[key] = 1
            await self.app.producer.flush()
            self._m_dead.add(len(sent))

    async def _write(self, out: BatchOutcome) -> None:
        # The batch was validated record by record before this, so a failed write is the
        # online store's or the disk's (any type): the same waits as before (0.4, 0.8, 1.6,
        # 3.2 s, at most 5 s), now jittered, then fatal (the process is restarted).
        policy = RetryPolicy(
            attempts=self._settings.write_attempts,
            initial_s=0.4,
            max_s=5.0,
            jitter_s=0.2,
            retry_on=(Exception,),
        )
        loop = asyncio.get_running_loop()
        attempts = 0
        try:
            async for attempt in policy.asynchronous("micro-batch write"):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    started = loop.time()
                    async with self._write_lock:
                        await asyncio.to_thread(self._writer.write, out.rows, out.labels)
                    self._m_batch.record(loop.time() - started)
        except Exception as exc:
            raise FatalError(f"writing a micro-batch failed {attempts} times: {exc!r}") from exc

    def _features_written(self, rows: list[FeatureRow]) -> list[Outgoing]:
        by_uc: dict[str, list[FeatureRow]] = {}
        for row in rows:
            by_uc.setdefault(row.use_case, []).append(row)
        out = []
        for name, group in by_uc.items():
            event = convert.features_written(name, group, self._refs[name])
            # Same records → same event id: a replayed batch is recognisably the same event.
            event_id = hashlib.sha256("\n".join(r.record_id for r in group).encode()).hexdigest()[:32]
            out.append(
                Outgoing(self._settings.features_written_topic, event, name, key=name, event_id=event_id)
            )
        return out

    async def run(self) -> None:
        """Start the faust app and watch it until it stops (run it in the background: reads
        are served while its tables recover); a start failure or a crash is fatal."""
        if self._stopped:
            return
        self._watchdog = asyncio.current_task()
        try:
            await self.app.start()
        except Exception as exc:  # noqa: BLE001 - any start failure is fatal
            self._on_fatal(exc)
            return
        lag = asyncio.get_running_loop().create_task(self.lag.run(), name="featurestore-consumer-lag")
        try:
            while not self.app.should_stop:
                await asyncio.sleep(0.5)
                if await self._stalled():
                    return
        finally:
            lag.cancel()
        if self.app.crashed:
            self._on_fatal(self.app.crash_reason or FatalError("faust app crashed"))

    def _assigned(self) -> set[Any]:
        """This worker's partitions (none before faust's consumer exists)."""
        try:
            return set(self.app.consumer.assignment())
        except Exception:  # noqa: BLE001 - not started, or stopping: judge the whole group
            return set()

    async def _stalled(self) -> bool:
        """Exit (``on_fatal``) when the group's offsets have not moved for ``stall_timeout_s``
        while records wait behind them; True when it did."""
        limit = self._settings.stall_timeout_s
        if not limit:
            return False
        if self.app.rebalancing or self.app.in_recovery:
            # No commits while the group rebalances or tables recover (a big changelog can
            # take minutes): allowed longer, yet not forever (a wedged rebalance ends too).
            limit *= REBALANCE_STALL_FACTOR
        reason = await self.lag.stalled(limit)
        if reason is None:
            return False
        self._on_fatal(FatalError(f"stream stalled: {reason}"))
        return True

    async def stop(self) -> None:
        """Finish the batches in flight, stop watching (:meth:`run` ends), then stop faust."""
        self._stopped = True
        # Finish what is in flight while faust's producer still runs (table writes).
        await asyncio.wait_for(asyncio.gather(self._records.drain(), self._labels.drain()), 60)
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        # Bounded, so the whole stop stays within a supervisor's kill timeout: the batches
        # that finished are committed already and the rest are replayed (at least once).
        try:
            await asyncio.wait_for(self.app.stop(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("faust did not stop within %.0fs; exiting without it", STOP_TIMEOUT_S)


def _credentials(security: KafkaSecurity) -> Any:
    if security.protocol == "PLAINTEXT":
        return None
    kwargs = security.client_kwargs()
    return faust.SASLCredentials(
        username=security.username,
        password=security.password,
        mechanism=security.mechanism,
        ssl_context=kwargs.get("ssl_context"),
    )
