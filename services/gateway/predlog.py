"""The prediction log: every prediction to the predictions topic, off the reply path.

A request only appends one :class:`Served` entry (references to what it already has:
the input rows, the raw Triton response) to a bounded in-memory buffer; a background
task turns entries into ``PredictionLogged`` events and publishes them in batches
(every ``flush_ms`` or as soon as ``batch`` predictions wait), and the last batch on
clean shutdown (:meth:`PredictionLog.close`).

With a :class:`~services.gateway.writeahead.WriteAheadLog`, each entry is also written to a
local file before the reply and read back at the next start: a kill -9 loses none.

Nothing is published twice either. A publish whose outcome is unknown (it failed, yet
Kafka may have taken some of its records; or the process died before it could note that
Kafka had them) is not simply sent again: before the next send of those entries the log
reads the predictions topic from the time of the first attempt and leaves out the events
already there (:meth:`BulkPublisher.logged_among`). The topic is the authority on what it
holds; the gateway's own bookkeeping is a hint. Should that read fail to finish in time
(:data:`_LOOKUPS` times running, each bounded), the entries are sent without it, counted
in ``aif.gateway.predictions.unverified``: a stuck lookup must not hold the log forever.

When the buffer is full (Kafka down or slower than the traffic for long enough) the
gateway keeps answering and **drops** the new predictions' log entries, counting them
in ``gateway.predictions.dropped`` (and in :attr:`PredictionLog.dropped`): replies are
never held up by the log, and nothing is lost without being counted. A publish that
fails is retried with backoff, its entries staying in the buffer meanwhile.

Personal data: the features logged are the model's inputs; a column computed from a
field the spec marks ``pii: drop`` is left out, one from a ``pii: hash`` field is
logged as its keyed hash (``libs.auth.privacy.pseudonym`` with ``privacy_salt``), and
so is the entity id when the entity field is personal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from tritonclient.grpc import service_pb2

from aifactory.gateway.v1 import events_pb2
from libs.auth.privacy import pseudonym
from libs.bus.headers import EVENT_ID, PRODUCED_AT, EventMeta
from libs.bus.partitions import partitions_for
from libs.bus.readback import records_to_end
from libs.bus.types import event_type_of, schema_version_of
from libs.errors import ConfigError, Unavailable
from libs.retry import RetryPolicy
from libs.usecase import UseCase
from services.gateway.eventcodec import PredictionEncoder, RowMeta
from services.gateway.inputs import InputSchema

if TYPE_CHECKING:
    from services.gateway.writeahead import WriteAheadLog

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Served:
    """One scoring call (one or more rows) as it was served."""

    use_case: str
    model_name: str
    version: int
    alias: str
    prediction_ids: Sequence[str]
    entity_ids: Sequence[str]  # one per row, "" when features came inline
    inputs: np.ndarray | bytes  # float32 [rows, width], or its raw bytes
    outputs: np.ndarray | None  # float32 [rows, n_out]; None: decode oip_response
    latency_us: int
    trace_id: str = ""
    shadow: bool = False
    oip_response: bytes | None = None
    traceparent: str = ""
    at: float = field(default_factory=time.time)

    @property
    def rows(self) -> int:
        return len(self.prediction_ids)


class Privacy:
    """Which logged columns of a use case are dropped or hashed (see the module docstring)."""

    def __init__(self, uc: UseCase, salt: str) -> None:
        pii = uc.pii_fields()
        sources: dict[str, set[str]] = {}
        for f in uc.features.row:
            names = {f.source} | ({f.other} if f.other else set())
            if f.transform == "one_hot":
                for c in uc.fields[f.source].enum or ():
                    sources[f"{f.name}__{c}"] = names
            else:
                sources[f.name] = names
        for a in uc.features.aggregates:
            sources[a.name] = {a.source} if a.source else set()
        self.drop = {c for c, s in sources.items() if any(pii.get(n) == "drop" for n in s)}
        self.hash = {
            c for c, s in sources.items() if c not in self.drop and any(pii.get(n) == "hash" for n in s)
        }
        self.entity = pii.get(uc.entity.field, "none")
        self._salt = salt.encode()
        if (self.hash or self.entity == "hash") and not self._salt:
            raise ConfigError(f"use case {uc.name} logs personal data hashed: AIF_PRIVACY_SALT must be set")

    def pseudonym(self, value: object) -> str:
        return pseudonym(value, self._salt)

    def entity_id(self, entity_id: str) -> str:
        if not entity_id or self.entity == "none":
            return entity_id
        return "" if self.entity == "drop" else pseudonym(entity_id, self._salt)


class _Encoder:
    """Served entries of one use case → encoded PredictionLogged events (see eventcodec)."""

    def __init__(self, schema: InputSchema, privacy: Privacy) -> None:
        self.privacy = privacy
        self.codec = PredictionEncoder(schema, schema.use_case, privacy.drop, privacy.hash, privacy.pseudonym)

    def records(self, entries: Sequence[Served], headers: _Headers) -> list[_Record]:
        """One record per row of every entry, encoded a batch at a time."""
        out: list[_Record] = []
        with_outputs: list[tuple[Served, np.ndarray, np.ndarray | None]] = []
        without: list[tuple[Served, np.ndarray, np.ndarray | None]] = []
        for s in entries:
            inputs = (
                s.inputs
                if isinstance(s.inputs, np.ndarray)
                else np.frombuffer(s.inputs, dtype=np.float32).reshape(s.rows, -1)
            )
            outputs = s.outputs if s.outputs is not None else _oip_outputs(s.oip_response or b"", s.rows)
            (with_outputs if outputs is not None else without).append((s, inputs, outputs))
        for group in (with_outputs, without):
            if not group:
                continue
            metas: list[RowMeta] = []
            meta_headers: list[tuple[bytes, list[tuple[str, bytes]]]] = []
            produced_at = str(int(time.time() * 1000)).encode()
            for s, _, _ in group:
                nanos = int(s.at * 1e9)
                tail = self.codec.tail(
                    s.latency_us, s.trace_id, nanos // 1_000_000_000, nanos % 1_000_000_000, s.alias, s.shadow
                )
                model = self.codec.model(s.model_name, s.version)
                common = headers.common(s.use_case, s.traceparent, produced_at)
                for r in range(s.rows):
                    pid = s.prediction_ids[r]
                    entity = self.privacy.entity_id(s.entity_ids[r] if s.entity_ids else "")
                    metas.append(RowMeta(pid, entity, model, tail))
                    key = pid.encode()
                    meta_headers.append((key, [(EVENT_ID, key + b":shadow" if s.shadow else key), *common]))
            inputs = np.concatenate([i for _, i, _ in group])
            outputs = np.concatenate([o for _, _, o in group]) if group is with_outputs else None  # type: ignore[misc]
            for (key, hdrs), value in zip(
                meta_headers, self.codec.encode(metas, inputs, outputs), strict=True
            ):
                out.append(_Record(key, value, hdrs))
        return out


def _oip_outputs(response: bytes, rows: int) -> np.ndarray | None:
    resp = service_pb2.ModelInferResponse.FromString(response)
    if not resp.raw_output_contents:
        return None
    return np.frombuffer(resp.raw_output_contents[0], dtype=np.float32).reshape(rows, -1)


_CLOCK_MARGIN_S = 2.0
# Lookups of the topic that time out in a row before the entries are sent unchecked.
_LOOKUPS = 3
# Entries encoded, and records appended to a Kafka batch, between two yields to the event
# loop: requests wait at most one slice (~0.1 ms) behind the log.
_ENCODE_SLICE = 8
_APPEND_SLICE = 32


@dataclass(slots=True)
class _Record:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def event_id(self) -> bytes:
        return self.headers[0][1]  # _Encoder.records puts EVENT_ID first


class _Headers:
    """The bus's standard headers (``libs.bus.headers``) of PredictionLogged events,
    encoded once per use case; only the event id and the trace differ per event."""

    def __init__(self, producer: str) -> None:
        sample = events_pb2.PredictionLogged()
        self._meta = EventMeta.new(event_type_of(sample), schema_version_of(sample), "", producer, "-")
        self._cache: dict[str, list[tuple[str, bytes]]] = {}

    def common(self, use_case: str, traceparent: str, produced_at: bytes) -> list[tuple[str, bytes]]:
        base = self._cache.get(use_case)
        if base is None:
            meta = EventMeta(
                self._meta.event_id,
                self._meta.event_type,
                self._meta.schema_version,
                use_case,
                self._meta.producer,
                0,
            )
            base = self._cache[use_case] = [
                h for h in meta.to_headers() if h[0] not in (EVENT_ID, PRODUCED_AT)
            ]
        stamped = [*base, (PRODUCED_AT, produced_at)]
        if traceparent:
            stamped.append(("traceparent", traceparent.encode()))
        return stamped


class BulkPublisher:
    """Publishes pre-encoded events in Kafka record batches.

    The prediction log's own producer (idempotent, ``acks=all``, like
    :class:`libs.bus.EventPublisher`, whose headers it writes): aiokafka's batch API
    costs about 1 µs per event against some 45 µs through ``publish_many`` (a span,
    a future and a Python-built record per event), and this runs in the process
    that answers requests. Partitions follow the default partitioner on the key, as
    the bus's own sends do.
    """

    def __init__(self, bootstrap_servers: str, producer: str, **client_kwargs: object) -> None:
        self.producer_name = producer
        self._bootstrap = bootstrap_servers
        self._client_kwargs = client_kwargs
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=f"{producer}-predlog",
            enable_idempotence=True,
            acks="all",
            max_batch_size=1 << 20,
            **client_kwargs,
        )  # type: ignore[arg-type]
        self._partitions: dict[str, list[int]] = {}

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, topic: str, records: Sequence[_Record]) -> None:
        """Returns once Kafka has every record (raises when it could not take them)."""
        partitions = self._partitions.get(topic)
        if partitions is None:
            found = await self._producer.partitions_for(topic)
            if not found:
                raise Unavailable(f"topic {topic} has no partitions")
            partitions = self._partitions[topic] = sorted(found)
        by_partition: dict[int, list[_Record]] = {}
        if len(partitions) == 1:
            by_partition[partitions[0]] = list(records)  # no hashing
        else:
            # All keys at once (numpy): aiokafka's murmur2 is pure Python, ~6 µs a key.
            for partition, record in zip(
                partitions_for([r.key for r in records], partitions), records, strict=True
            ):
                by_partition.setdefault(partition, []).append(record)
        pending = []
        for partition, items in by_partition.items():
            batch = self._producer.create_batch()
            for i, record in enumerate(items, 1):
                if i % _APPEND_SLICE == 0:
                    await asyncio.sleep(0)
                if (
                    batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers)
                    is None
                ):
                    batch.close()
                    pending.append(await self._producer.send_batch(batch, topic, partition=partition))
                    batch = self._producer.create_batch()
                    batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers)
            batch.close()
            pending.append(await self._producer.send_batch(batch, topic, partition=partition))
        try:
            await asyncio.gather(*pending)
        except Exception:
            self._partitions.pop(topic, None)  # re-read the topic's partitions on the retry
            raise

    async def logged_among(
        self, topic: str, event_ids: set[bytes], since_ms: int, timeout_s: float = 30.0
    ) -> set[bytes]:
        """Those of ``event_ids`` that ``topic`` holds in records stamped ``since_ms`` or later.

        Reads every partition from the first record at ``since_ms`` up to its end as it is
        now (no consumer group, committed records only). :class:`Unavailable` when that
        takes longer than ``timeout_s``: the caller keeps its entries and asks again later.
        """
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self.producer_name}-predlog-check",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            **self._client_kwargs,  # type: ignore[arg-type]
        )
        found: set[bytes] = set()
        try:
            async with asyncio.timeout(timeout_s):
                await consumer.start()
                partitions = [
                    TopicPartition(topic, p) for p in sorted(await self._producer.partitions_for(topic))
                ]
                consumer.assign(partitions)
                starts = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
                stamped = {tp: start.offset for tp, start in starts.items() if start is not None}
                for tp, offset in stamped.items():
                    consumer.seek(tp, offset)
                async for m in records_to_end(consumer, stamped):
                    event_id = next((v for k, v in m.headers if k == EVENT_ID), None)
                    if event_id in event_ids:
                        found.add(event_id)
        except TimeoutError:
            raise Unavailable(f"reading {topic} back took longer than {timeout_s:.0f}s") from None
        finally:
            await consumer.stop()
        return found


class PredictionLog:
    def __init__(
        self,
        publisher: BulkPublisher,
        topic: str,
        usecases: Mapping[str, UseCase],
        schemas: Mapping[str, InputSchema],
        *,
        salt: str = "",
        capacity: int = 50_000,
        batch: int = 500,
        flush_ms: int = 50,
        meter: Meter | None = None,
        wal: WriteAheadLog | None = None,
    ) -> None:
        self._publisher = publisher
        # Entries also go to a local file before the reply (see services.gateway.writeahead).
        self._wal = wal
        self._topic = topic
        self._salt = salt
        self._encoders = {name: _Encoder(schemas[name], Privacy(uc, salt)) for name, uc in usecases.items()}
        self._headers = _Headers(publisher.producer_name)
        self._capacity = capacity
        self._batch = batch
        self._flush_s = flush_ms / 1000
        self._buffer: deque[Served] = deque()
        self._rows = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # The first ``_unsure`` entries of the buffer may be on Kafka already, in records
        # stamped ``_unsure_since`` (epoch s) or later: looked up before they are sent.
        self._unsure = 0
        self._unsure_since = 0.0
        self._lookups_timed_out = 0  # in a row
        self.logged = 0
        self.found_logged = 0  # events left out of a send: the topic already had them
        self.unverified = 0  # events sent again without the lookup (it kept timing out)
        self.dropped = 0
        self.failed_publishes = 0
        self._m_logged = self._m_dropped = self._m_unverified = None
        if meter is not None:
            self._m_logged = meter.create_counter(
                "aif.gateway.predictions.logged", description="predictions published to the predictions topic"
            )
            self._m_dropped = meter.create_counter(
                "aif.gateway.predictions.dropped",
                description="predictions not logged because the buffer was full",
            )
            self._m_unverified = meter.create_counter(
                "aif.gateway.predictions.unverified",
                description="predictions sent again unchecked: reading the topic back timed out",
            )
            meter.create_observable_gauge(
                "aif.gateway.predictions.buffered",
                callbacks=[self._observe],
                description="predictions waiting in the log buffer",
            )

    def take_up(self, uc: UseCase, schema: InputSchema) -> None:
        """Log predictions of ``uc`` (applied while running) too."""
        self._encoders[uc.name] = _Encoder(schema, Privacy(uc, self._salt))

    def _observe(self, _options: CallbackOptions) -> list[Observation]:

        return [Observation(self._rows)]

    @property
    def buffered(self) -> int:
        return self._rows

    def start(self) -> asyncio.Task[None]:
        """Start the flusher (after taking back what the write-ahead file kept from a
        previous process); returns its task (the service watches it)."""
        if self._wal is not None:
            for served in self._wal.recover():
                self._buffer.append(served)
                self._rows += served.rows
            if self._buffer:
                log.warning("prediction log: %d predictions of a previous process to publish", self._rows)
                # Its last publish may have reached Kafka unmarked; it came after serving.
                self._unsure_sent(len(self._buffer), min(s.at for s in self._buffer))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="prediction-log")
        return self._task

    def offer(self, served: Served) -> bool:
        """Queue ``served`` for the log; False (and counted) when the buffer is full."""
        rows = served.rows
        if self._closing or self._rows + rows > self._capacity:
            self.dropped += rows
            if self._m_dropped is not None:
                self._m_dropped.add(rows, {"use_case": served.use_case})
            return False
        if self._wal is not None:
            self._wal.append(served)
        self._buffer.append(served)
        self._rows += rows
        if self._rows >= self._batch:
            self._wake.set()
        return True

    async def _run(self) -> None:
        # A failed publish keeps its entries and the next round tries again after 0.1 s,
        # doubling to 5 s, jittered. No attempt bound: memory is bounded by the buffer's
        # capacity instead (what does not fit is dropped and counted), and giving up on
        # entries Kafka may take a minute later would lose them.
        backoff = RetryPolicy(attempts=None, initial_s=0.1, max_s=5.0, jitter_s=0.1).backoff(
            "publishing the prediction log"
        )
        while True:
            if not self._buffer:
                if self._closing:
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._flush_s)
                except TimeoutError:
                    pass
                continue
            if self._rows < self._batch and not self._closing:
                # A short pause lets a batch fill up (fewer, larger sends).
                await asyncio.sleep(self._flush_s)
            try:
                await self._flush_some()
                backoff.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - entries stay buffered; retried
                self.failed_publishes += 1
                pause = backoff.failed(exc)
                log.warning(
                    "prediction log publish failed (%s); %d predictions buffered, retrying in %.1fs",
                    exc,
                    self._rows,
                    pause,
                )
                await asyncio.sleep(pause)

    async def _flush_some(self) -> None:
        taken: list[Served] = []
        rows = 0
        for served in self._buffer:
            if taken and rows + served.rows > self._batch:
                break
            taken.append(served)
            rows += served.rows
        by_use_case: dict[str, list[Served]] = {}
        for served in taken:
            by_use_case.setdefault(served.use_case, []).append(served)
        records: list[_Record] = []
        for use_case, entries in by_use_case.items():
            encoder = self._encoders.get(use_case)
            if encoder is None:
                continue
            # A slice at a time, yielding in between: requests are served on this loop too,
            # and a 500-row batch encoded in one go would hold them up for milliseconds.
            for start in range(0, len(entries), _ENCODE_SLICE):
                records += encoder.records(entries[start : start + _ENCODE_SLICE], self._headers)
                await asyncio.sleep(0)
        if self._wal is not None:
            await asyncio.to_thread(self._wal.sync)
        if records and self._unsure:
            records = await self._not_logged_yet(records)
        if records:
            attempt = time.time()
            try:
                await self._publisher.publish(self._topic, records)
            except BaseException:
                self._unsure_sent(len(taken), attempt)  # some may have reached Kafka
                raise
        # Only now that Kafka has them do they leave the buffer.
        for _ in taken:
            self._buffer.popleft()
        self._rows -= rows
        self._unsure = max(0, self._unsure - len(taken))
        if self._wal is not None:
            self._wal.published(len(taken))
        self.logged += len(records)
        if self._m_logged is not None and records:
            self._m_logged.add(len(records))

    def _unsure_sent(self, entries: int, since: float) -> None:
        """The first ``entries`` entries may be on Kafka, sent at ``since`` or later."""
        self._unsure_since = min(self._unsure_since, since) if self._unsure else since
        self._unsure = max(self._unsure, entries)

    async def _not_logged_yet(self, records: list[_Record]) -> list[_Record]:
        """``records`` less those the topic already holds (see the module docstring)."""
        # A margin for a broker that stamps records with its own clock (LogAppendTime).
        since_ms = int((self._unsure_since - _CLOCK_MARGIN_S) * 1000)
        ids = {r.event_id for r in records}
        try:
            there = await self._publisher.logged_among(self._topic, ids, since_ms)
        except Unavailable as exc:  # the read timed out (Kafka down fails the send as well)
            self._lookups_timed_out += 1
            if self._lookups_timed_out < _LOOKUPS:
                raise
            self._lookups_timed_out = 0
            self.unverified += len(records)
            if self._m_unverified is not None:
                self._m_unverified.add(len(records))
            log.error(
                "prediction log: %s %d times running; sending %d predictions unchecked (some may be there twice)",
                exc,
                _LOOKUPS,
                len(records),
            )
            return records
        self._lookups_timed_out = 0
        if not there:
            return records
        self.found_logged += len(there)
        log.warning("prediction log: %d predictions already on %s, not sent again", len(there), self._topic)
        return [r for r in records if r.event_id not in there]

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop taking entries, publish what is buffered (within ``timeout_s``), stop."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._task.cancel()
            lost = self._rows
            if self._wal is not None:
                log.error("prediction log: %d predictions kept in its file for the next start", lost)
            else:
                self.dropped += lost
                log.error(
                    "prediction log: %d predictions not published at shutdown (Kafka unreachable)", lost
                )
        if self._wal is not None:
            self._wal.close()
