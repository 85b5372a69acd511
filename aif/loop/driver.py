"""Drives the closed loop on a running factory, the way its users would.

A business producer streams loan applications (JSON) to the use case's raw topic;
outcomes of the first applications arrive as feedback events; an ML engineer asks for
a first model; the app then asks the gateway for a decision on every new application
(by entity id: features come from the online store) and reports each outcome through
the feedback API. Part-way through, the concept drifts (river's Agrawal rule changes).
Nothing else is done by hand: the monitor must notice, the trainer retrain, the
evaluator pass, the registry promote and the gateway switch on their own.

The driver only observes (predictions' model versions, the monitor's reports, the
registry's audit log and lineage, the dead-letter topic) and measures.

Outcomes come back as an app's would (``LoopConfig.outcome_delay``): at once after the
decision ("instant"); after a wall-clock delay drawn for each outcome ("wall", seconds);
or once the stream's event time has moved on by a delay drawn for each outcome
("event", minutes of event time: the outcome of an application is reported after the
applications of those minutes were decided). Both delays are drawn uniformly up to the
spec's ``label.max_delay``, capped so a run stays short (``wall_delay_cap_s``,
``event_delay_cap``). During the stationary phase the driver can also inject orphan
labels (feedback for entities never ingested, and for records of known entities that
ingestion never stored) and poisoned labels (outcomes that are not a declared class,
or not even a number): the loop must still close, the orphans must be quarantined by
the feature store (counted with v2's training run) and the poisoned ones dead-lettered.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp

from aif.datagen import Example, LoanStream, to_json
from aif.loop.quality import Served, phase_quality
from aifactory.common.v1 import common_pb2
from aifactory.featurestore.v1 import featurestore_service_pb2 as fs_pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as fs_grpc
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from aifactory.monitor.v1 import monitor_service_pb2 as mon_pb
from aifactory.monitor.v1 import monitor_service_pb2_grpc as mon_grpc
from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from aifactory.trainer.v1 import trainer_service_pb2 as tr_pb
from aifactory.trainer.v1 import trainer_service_pb2_grpc as tr_grpc
from libs.bus import EventPublisher, KafkaSecurity, Outgoing, topics
from libs.bus import headers as h
from libs.bus.lag import ConsumerLag
from libs.errors import FailedPrecondition, InvalidArgument, Unavailable
from libs.rpc.client import ClientTls
from libs.rpc.client import channel as open_channel
from libs.usecase import load_default

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class LoopConfig:
    use_case: str = "loan_approval"
    bootstrap: int = 2_500  # applications with known outcomes before the first model
    stationary: int = 1_500  # served before the concept drifts
    recovery: int = 1_000  # served after the new champion serves
    max_after_onset: int = 20_000  # give up when the loop has not closed by then (or timeout_s)
    batch: int = 50
    seed: int = 42
    drift_width: int = 50
    timeout_s: float = 600.0
    # How outcomes of served applications come back: "instant", "wall" or "event" (see above).
    outcome_delay: str = "instant"
    wall_delay_cap_s: float = 3.0
    event_delay_cap: timedelta = timedelta(minutes=3)
    # Labels injected during the stationary phase (after v1, before the drift).
    orphans: int = 0
    poisoned: int = 0

    def __post_init__(self) -> None:
        if self.outcome_delay not in OUTCOME_DELAYS:
            raise InvalidArgument("outcome_delay", f"one of {OUTCOME_DELAYS}, not {self.outcome_delay!r}")


OUTCOME_DELAYS = ("instant", "wall", "event")
# Consumer groups between a raw record and its online row: ingestion's, the feature store's
# stream processor's (their default names).
LAGGING_GROUPS = ("ingestion", "aif-featurestore")
# The reason the feature store gives a label that joins no feature row (GetTrainingSetResponse.quarantined).
NO_FEATURE_ROW = "no_feature_row"
QUARANTINE_METRIC = "quarantined_labels."


@dataclass(frozen=True)
class LoopKafka:
    """How the driver's Kafka clients log in to a secure broker: ``records`` as the use
    case's business producer (its raw topic), ``outcomes`` as the bank's outcome feed (the
    feedback topic). Neither may read the dead-letter topic: a run that injects poisoned
    labels, and counts them there, needs the open broker."""

    records: KafkaSecurity
    outcomes: KafkaSecurity


@dataclass
class Timeline:
    started: float = field(default_factory=time.monotonic)
    wall_started: float = field(default_factory=time.time)  # to place the registry's audit times
    entries: list[tuple[float, str]] = field(default_factory=list)

    def add(self, what: str) -> float:
        at = time.monotonic() - self.started
        self.entries.append((at, what))
        return at


@dataclass
class LoopResult:
    config: LoopConfig
    served: list[Served]
    onset_index: int  # index in `served` of the first drifted application
    v1: int
    v2: int | None
    detected_at_index: int | None  # served records from onset to the first drift report
    detected_after_s: float | None
    false_alarms: int
    serving_after_s: float | None  # drift onset → the new champion answers
    v2_first_index: int | None
    timeline: Timeline
    lineage: reg_pb.GetLineageResponse | None = None
    drift_report_id: str = ""
    audit_valid: bool = False
    # What anchored the chain outside the registry's database (its signed checkpoints).
    audit_anchor: str = ""
    audit_events: list[reg_pb.ListAuditEventsResponse] = field(default_factory=list)
    # The monitor's drift reports after the onset (id → created, wall seconds), at the end.
    drift_reports: dict[str, float] = field(default_factory=dict)
    # Injected labels, and what the factory made of them.
    orphans_injected: int = 0
    poisoned_injected: int = 0
    poisoned_dead_lettered: int = 0
    outcomes_reported: int = 0

    @property
    def v2_drift_report_id(self) -> str:
        """The drift report v2's lineage (read from the registry) names as its cause."""
        return self.lineage.model_version.drift_report_id if self.lineage is not None else ""

    @property
    def causal(self) -> bool:
        """v2 was trained because of this drift: its lineage names a drift report the
        monitor raised after the onset (not a false alarm, not an empty link)."""
        return bool(self.v2_drift_report_id) and self.v2_drift_report_id in self.drift_reports

    @property
    def quarantined(self) -> dict[str, int]:
        """Labels v2's training set left out, by reason (recorded with its run)."""
        if self.lineage is None:
            return {}
        return {
            m.name.removeprefix(QUARANTINE_METRIC): int(m.value)
            for m in self.lineage.run.metrics
            if m.name.startswith(QUARANTINE_METRIC) and m.step == 0
        }

    def quality(self) -> dict[str, dict[str, float]]:
        end_during = self.v2_first_index if self.v2_first_index is not None else len(self.served)
        return {
            "before drift": phase_quality(self.served[: self.onset_index]),
            "during drift": phase_quality(self.served[self.onset_index : end_during]),
            "after recovery": phase_quality(self.served[end_during:] if self.v2_first_index else []),
        }

    @property
    def recovered_ratio(self) -> float:
        q = self.quality()
        before, after = q["before drift"].get("accuracy"), q["after recovery"].get("accuracy")
        return after / before if before and after else 0.0

    @property
    def closed(self) -> bool:
        return (
            self.v2 is not None
            and self.detected_at_index is not None
            and self.false_alarms == 0
            and self.recovered_ratio >= 0.95
            and self.audit_valid
            and self.causal
        )


def _ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def _unique_batches(examples: Iterator[Example], size: int) -> Iterator[list[Example]]:
    """Batches of distinct entities, so "the online row shows this record" is unambiguous."""
    batch: list[Example] = []
    seen: set[str] = set()
    for ex in examples:
        if ex.entity_id in seen or len(batch) == size:
            yield batch
            batch, seen = [], set()
        batch.append(ex)
        seen.add(ex.entity_id)
    if batch:
        yield batch


class LoopDriver:
    """Runs the loop against services reachable at ``targets`` (name → host:port)."""

    def __init__(
        self,
        bootstrap_servers: str,
        targets: dict[str, str],
        metadata: Metadata,
        config: LoopConfig,
        say: Callable[[str], None] = print,
        tls: ClientTls | None = None,
        kafka: LoopKafka | None = None,
    ) -> None:
        """``tls``: the driver's mutual TLS to a factory that requires it (None: plaintext);
        ``kafka``: its logins to a secure broker (None: the open broker, PLAINTEXT)."""
        self.cfg = config
        self._tls = tls
        self._kafka = kafka
        if kafka is not None and config.poisoned:
            raise InvalidArgument("poisoned", "counting dead letters needs the open broker (see LoopKafka)")
        self._bootstrap = bootstrap_servers
        self._targets = targets
        self._md = metadata
        self._say = say
        self.timeline = Timeline()
        total = config.bootstrap + config.stationary + config.max_after_onset + config.recovery
        # Event time runs one second per application and ends before "now", so no record
        # is in the future; the drift starts with the first served application after the
        # stationary phase.
        start = datetime.now(UTC) - timedelta(seconds=total + 600)
        self._stream = iter(
            LoanStream(
                seed=config.seed,
                drift_at=config.bootstrap + config.stationary,
                drift_width=config.drift_width,
                start=start,
                interval=timedelta(seconds=1),
                label_delay=timedelta(seconds=30),
            )
        )
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._producer: AIOKafkaProducer | None = None
        self._publisher: EventPublisher | None = None
        max_delay = load_default()[config.use_case].label.max_delay
        self._wall_delay_s = min(max_delay.total_seconds(), config.wall_delay_cap_s)
        self._event_delay = min(max_delay, config.event_delay_cap)
        self._rng = random.Random(config.seed + 1)
        # "event": outcomes waiting for the stream to reach their label time, a heap of
        # (label event time, sequence, request); "wall": the sleeping senders.
        self._due: list[tuple[datetime, int, gw_pb.RecordFeedbackRequest]] = []
        self._seq = itertools.count()
        self._senders: set[asyncio.Task[None]] = set()
        self.outcomes_reported = 0
        self._poison_ids: set[str] = set()

    # -- plumbing --------------------------------------------------------------------

    def _channel(self, name: str) -> grpc.aio.Channel:
        if name not in self._channels:
            # Plain: every call carries the driver's metadata itself.
            self._channels[name] = open_channel(self._targets[name], self._tls, plain=True)
        return self._channels[name]

    async def __aenter__(self) -> LoopDriver:
        records = self._kafka.records.client_kwargs() if self._kafka else {}
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, linger_ms=5, acks="all", **records
        )
        await self._producer.start()
        self._publisher = EventPublisher(
            self._bootstrap, producer="loan-app", security=self._kafka.outcomes if self._kafka else None
        )
        await self._publisher.start()
        self.gateway = gw_grpc.GatewayServiceStub(self._channel("gateway"))
        self.features = fs_grpc.FeatureStoreServiceStub(self._channel("featurestore"))
        self.registry = reg_grpc.RegistryServiceStub(self._channel("registry"))
        self.trainer = tr_grpc.TrainerServiceStub(self._channel("trainer"))
        self.monitor = mon_grpc.MonitorServiceStub(self._channel("monitor"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()
        if self._publisher is not None:
            await self._publisher.stop()
        for channel in self._channels.values():
            await channel.close()

    def _take(self, n: int) -> Iterator[list[Example]]:
        return _unique_batches(itertools.islice(self._stream, n), self.cfg.batch)

    # -- what a producer and an app do ------------------------------------------------

    async def produce(self, batch: Sequence[Example]) -> None:
        """Applications as a business producer sends them: JSON on the raw topic."""
        assert self._producer is not None
        topic = topics.raw(self.cfg.use_case)
        for ex in batch:
            await self._producer.send(
                topic, to_json({**ex.record, "record_id": ex.record_id}), key=ex.entity_id.encode()
            )
        await self._producer.flush()

    async def wait_online(self, batch: Sequence[Example], timeout: float = 60.0) -> None:
        """Until the online store's row of every entity reflects this batch's record."""
        want = {ex.entity_id: ex.record_id for ex in batch}
        deadline = time.monotonic() + timeout
        while want:
            seen: dict[str, str] = {}
            try:
                reply = await self.features.GetOnlineFeatures(
                    fs_pb.GetOnlineFeaturesRequest(use_case=self.cfg.use_case, entity_ids=list(want)),
                    metadata=self._md,
                    timeout=10,
                )
            except grpc.aio.AioRpcError as exc:
                # The feature store restarting (its supervisor starts it again): ask again.
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                reply = fs_pb.GetOnlineFeaturesResponse()
            for row in reply.rows:
                seen[row.entity_id] = row.record_id if row.found else "<none>"
                if row.found and row.record_id == want.get(row.entity_id):
                    want.pop(row.entity_id)
            if want and time.monotonic() > deadline:
                # Name what the store shows: an older record id means a write was lost or
                # overtaken, "<none>" that the stream processor has not got there yet.
                shown = ", ".join(
                    f"{entity}: want {record}, online {seen.get(entity, '<none>')}"
                    for entity, record in itertools.islice(want.items(), 3)
                )
                raise Unavailable(
                    f"{len(want)} records not online after {timeout:.0f}s ({shown}); {await self._lags()}"
                )
            if want:
                await asyncio.sleep(0.05)

    async def _lags(self) -> str:
        """Where records wait, for a failure message: what ingestion and the feature store's
        stream processor have still to read, per topic (their consumer groups' lag)."""
        notes = []
        for group in LAGGING_GROUPS:
            lag = ConsumerLag(self._bootstrap, group, self._kafka.outcomes if self._kafka else None)
            try:
                by_topic = await asyncio.wait_for(lag.refresh(), 10)
                notes.append(f"{group} lag {dict(sorted(by_topic.items())) or 'nothing committed'}")
            except Exception as exc:  # noqa: BLE001 - a diagnosis must not hide the failure
                notes.append(f"{group} lag not measured ({exc!r})")
            finally:
                await lag.close()
        return ", ".join(notes)

    async def report_outcomes(self, batch: Sequence[Example]) -> None:
        """Outcomes of past applications, as the bank's systems report them (feedback topic)."""
        assert self._publisher is not None
        events = [
            Outgoing(
                topics.FEEDBACK,
                gateway_events.FeedbackRecorded(
                    feedback_id=f"fb-{ex.record_id}",
                    use_case=self.cfg.use_case,
                    entity_id=ex.entity_id,
                    record_id=ex.record_id,
                    event_time=_ts(ex.event_time),
                    outcome=common_pb2.Value(int64_value=ex.label),
                    observed_at=_ts(ex.label_time),
                    recorded_at=_ts(datetime.now(UTC)),
                ),
                use_case=self.cfg.use_case,
                key=ex.entity_id,
                event_id=f"fb-{ex.record_id}",
            )
            for ex in batch
        ]
        await self._publisher.publish_many(events)

    async def serve(self, batch: Sequence[Example]) -> list[Served]:
        """The app: a decision per application by entity id, then the outcome as feedback."""
        reply = await self.gateway.PredictBatch(
            gw_pb.PredictBatchRequest(
                use_case=self.cfg.use_case,
                inputs=[gw_pb.PredictionInput(entity_id=ex.entity_id) for ex in batch],
            ),
            metadata=self._md,
            timeout=10,
        )
        served = []
        for ex, p in zip(batch, reply.predictions, strict=True):
            if p.error:
                raise FailedPrecondition(f"prediction for {ex.entity_id} failed: {p.error}")
            served.append(
                Served(
                    p.prediction_id,
                    p.model.version,
                    p.output.double_value,
                    int(ex.label),
                    ex.drifted,
                    time.monotonic(),
                )
            )
        requests = [
            gw_pb.RecordFeedbackRequest(
                prediction_id=s.prediction_id,
                use_case=self.cfg.use_case,
                outcome=common_pb2.Value(int64_value=ex.label),
                feedback_id=f"fb-{ex.record_id}",
                record_id=ex.record_id,
                event_time=_ts(ex.event_time),
                entity_id=ex.entity_id,
            )
            for ex, s in zip(batch, served, strict=True)
        ]
        mode = self.cfg.outcome_delay
        if mode == "instant":
            await self._send_outcomes(requests)
        elif mode == "wall":
            for request in requests:
                delay = self._rng.uniform(0.0, self._wall_delay_s)
                task = asyncio.create_task(self._send_later(request, delay))
                self._senders.add(task)
                task.add_done_callback(self._senders.discard)
        else:
            for ex, request in zip(batch, requests, strict=True):
                due = ex.event_time + self._rng.uniform(0.0, 1.0) * self._event_delay
                heapq.heappush(self._due, (due, next(self._seq), request))
            # The stream's event time is now the newest decided application's.
            now = max(ex.event_time for ex in batch)
            ready = []
            while self._due and self._due[0][0] <= now:
                ready.append(heapq.heappop(self._due)[2])
            await self._send_outcomes(ready)
        return served

    async def _send_outcomes(self, requests: Sequence[gw_pb.RecordFeedbackRequest]) -> None:
        """Report outcomes through the gateway, observed now (wall time, after the decision)."""
        now = _ts(datetime.now(UTC))
        for request in requests:
            request.observed_at.CopyFrom(now)
        await asyncio.gather(
            *[self.gateway.RecordFeedback(r, metadata=self._md, timeout=10) for r in requests]
        )
        self.outcomes_reported += len(requests)

    async def _send_later(self, request: gw_pb.RecordFeedbackRequest, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._send_outcomes([request])

    # -- what a careless producer sends ------------------------------------------------

    async def inject_orphans(self, n: int, near: Sequence[Example]) -> int:
        """Feedback no feature row can back: half for entities never ingested, half for
        records of known entities that ingestion never stored (``near``: served examples
        whose entities and event times they borrow)."""
        assert self._publisher is not None
        events = []
        for i in range(n):
            ex = near[i % len(near)]
            ghost = i % 2 == 0
            record_id = f"orphan-{uuid.uuid4().hex[:12]}"
            entity = f"ghost-{record_id}" if ghost else ex.entity_id
            events.append(
                Outgoing(
                    topics.FEEDBACK,
                    gateway_events.FeedbackRecorded(
                        feedback_id=f"fb-{record_id}",
                        use_case=self.cfg.use_case,
                        entity_id=entity,
                        record_id=record_id,
                        # A known entity's label at a time of its own: an as-of join would
                        # hand it the features of the entity's older record.
                        event_time=_ts(ex.event_time + timedelta(milliseconds=500)),
                        outcome=common_pb2.Value(int64_value=1),
                        observed_at=_ts(datetime.now(UTC)),
                        recorded_at=_ts(datetime.now(UTC)),
                    ),
                    use_case=self.cfg.use_case,
                    key=entity,
                    event_id=f"fb-{record_id}",
                )
            )
        await self._publisher.publish_many(events)
        return n

    async def inject_poison(self, n: int, near: Sequence[Example]) -> int:
        """Feedback for real records whose outcome is not a label: a class the use case does
        not declare, or not a number at all."""
        assert self._publisher is not None
        events = []
        for i in range(n):
            ex = near[i % len(near)]
            event_id = f"poison-{uuid.uuid4().hex[:12]}"
            outcome = (
                common_pb2.Value(int64_value=7) if i % 2 == 0 else common_pb2.Value(string_value="approved?")
            )
            events.append(
                Outgoing(
                    topics.FEEDBACK,
                    gateway_events.FeedbackRecorded(
                        feedback_id=event_id,
                        use_case=self.cfg.use_case,
                        entity_id=ex.entity_id,
                        record_id=ex.record_id,
                        event_time=_ts(ex.event_time),
                        outcome=outcome,
                        observed_at=_ts(datetime.now(UTC)),
                        recorded_at=_ts(datetime.now(UTC)),
                    ),
                    use_case=self.cfg.use_case,
                    key=ex.entity_id,
                    event_id=event_id,
                )
            )
            self._poison_ids.add(event_id)
        await self._publisher.publish_many(events)
        return n

    async def dead_lettered(self, group: str = "aif-featurestore", timeout: float = 30.0) -> int:
        """How many injected poisoned labels ``group`` dead-lettered (read back from the
        dead-letter topic; waits up to ``timeout`` for all of them)."""
        if not self._poison_ids:
            return 0
        consumer = AIOKafkaConsumer(
            topics.DEAD_LETTER,
            bootstrap_servers=self._bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        found: set[str] = set()
        try:
            deadline = time.monotonic() + timeout
            while found != self._poison_ids and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        hs = {k: (v or b"").decode(errors="replace") for k, v in record.headers or ()}
                        if hs.get(h.DLQ_GROUP) == group and hs.get(h.EVENT_ID) in self._poison_ids:
                            found.add(hs[h.EVENT_ID])
        finally:
            await consumer.stop()
        return len(found)

    # -- what an ML engineer does once -----------------------------------------------

    async def wait_training_data(self, timeout: float = 120.0) -> int:
        """Until the feature store can build a complete training set (features and labels
        arrive on two topics; the store refuses a set with examples missing features)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = await self.features.GetTrainingSet(
                    fs_pb.GetTrainingSetRequest(use_case=self.cfg.use_case), metadata=self._md, timeout=120
                )
                return reply.row_count
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)

    async def train_first_model(self) -> int:
        job = (
            await self.trainer.SubmitTraining(
                tr_pb.SubmitTrainingRequest(
                    use_case=self.cfg.use_case, request_id=f"demo-v1-{uuid.uuid4().hex[:8]}"
                ),
                metadata=self._md,
                timeout=30,
            )
        ).job
        last = ""
        while job.state in (
            tr_pb.TRAINING_JOB_STATE_QUEUED,
            tr_pb.TRAINING_JOB_STATE_RUNNING,
            tr_pb.TRAINING_JOB_STATE_UNSPECIFIED,
        ):
            if job.message != last:
                self._say(f"    trainer: {job.message}")
                last = job.message
            await asyncio.sleep(0.5)
            job = (
                await self.trainer.GetTrainingJob(
                    tr_pb.GetTrainingJobRequest(job_id=job.job_id), metadata=self._md, timeout=10
                )
            ).job
        if job.state != tr_pb.TRAINING_JOB_STATE_SUCCEEDED:
            raise FailedPrecondition(
                f"first training {tr_pb.TrainingJobState.Name(job.state)}: {job.message}"
            )
        self._say(f"    trainer: {job.message}")
        return job.model.version

    async def champion(self) -> int | None:
        try:
            reply = await self.registry.GetAlias(
                reg_pb.GetAliasRequest(
                    use_case=self.cfg.use_case, model_name=self.cfg.use_case, alias="champion"
                ),
                metadata=self._md,
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return reply.alias.version

    async def wait_serving(self, version: int, probe: Example, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = await self.gateway.Predict(
                    gw_pb.PredictRequest(use_case=self.cfg.use_case, entity_id=probe.entity_id),
                    metadata=self._md,
                    timeout=5,
                )
                if reply.prediction.model.version == version:
                    return
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.FAILED_PRECONDITION,
                ):
                    raise
            if time.monotonic() > deadline:
                raise Unavailable(f"the gateway does not serve version {version} after {timeout:.0f}s")
            await asyncio.sleep(0.25)

    async def drift_reports(self) -> list[mon_pb.DriftReport]:
        reply = await self.monitor.ListDriftReports(
            mon_pb.ListDriftReportsRequest(use_case=self.cfg.use_case, drift_only=True, page_size=100),
            metadata=self._md,
            timeout=10,
        )
        return sorted(reply.reports, key=lambda r: r.created_at.ToNanoseconds())

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> LoopResult:
        cfg, say, tl = self.cfg, self._say, self.timeline
        say(f"==> 1/5 history: {cfg.bootstrap:,} applications with outcomes → raw topic, feedback topic")
        sent = 0
        probe: Example | None = None
        for batch in self._take(cfg.bootstrap):
            await self.produce(batch)
            await self.report_outcomes(batch)
            sent += len(batch)
            probe = batch[-1]
            if sent % 500 < len(batch):
                say(f"    {sent:,}/{cfg.bootstrap:,} applications ingested")
        assert probe is not None
        # The whole history goes through a stream processor that has just started (its
        # group forming, its topics being created): give it time in proportion.
        await self.wait_online([probe], timeout=60.0 + cfg.bootstrap / 20)
        rows = await self.wait_training_data()
        tl.add(
            f"{cfg.bootstrap:,} historical applications ingested, features online, "
            f"{rows:,} labelled examples ready"
        )

        say("==> 2/5 first model: train, evaluate, promote (auto policy), serve")
        version = await self.train_first_model()
        tl.add(f"v{version} trained")
        while await self.champion() != version:
            await asyncio.sleep(0.25)
        tl.add(f"v{version} evaluated and promoted to champion")
        await self.wait_serving(version, probe)
        tl.add(f"v{version} serving through the gateway")
        v1 = version

        say(f"==> 3/5 serving {cfg.stationary:,} applications by entity id, outcomes as feedback")
        served: list[Served] = []
        orphans = poisoned = 0
        decided: list[Example] = []
        for batch in self._take(cfg.stationary):
            await self.produce(batch)
            await self.wait_online(batch)
            served += await self.serve(batch)
            decided += batch
            if len(decided) >= cfg.stationary // 2 and orphans < cfg.orphans:
                orphans += await self.inject_orphans(cfg.orphans, decided[-cfg.batch :])
                poisoned += await self.inject_poison(cfg.poisoned, decided[-cfg.batch :])
                tl.add(f"injected {orphans} orphan and {poisoned} poisoned labels on the feedback topic")
        false_alarms = len(await self.drift_reports())
        tl.add(f"{len(served):,} served; drift reports so far: {false_alarms}")
        onset = len(served)

        say("==> 4/5 the concept drifts; waiting for the factory to notice and recover")
        onset_clock = time.monotonic()
        tl.add("drift onset (Agrawal rule 0 → 2)")
        detected_index: int | None = None
        detected_after: float | None = None
        report_id = ""
        v2: int | None = None
        v2_index: int | None = None
        serving_after: float | None = None
        deadline = onset_clock + cfg.timeout_s
        for batch in self._take(cfg.max_after_onset + cfg.recovery):
            await self.produce(batch)
            await self.wait_online(batch)
            served += await self.serve(batch)
            if detected_index is None:
                reports = await self.drift_reports()
                if len(reports) > false_alarms:
                    detected_index = len(served) - onset
                    detected_after = time.monotonic() - onset_clock
                    report_id = reports[false_alarms].report_id
                    tl.add(f"drift detected by the monitor ({report_id}) after {detected_index:,} records")
            newer = [s for s in served[onset:] if s.version > v1]
            if v2 is None and newer:
                v2 = newer[0].version
                v2_index = served.index(newer[0])
                serving_after = newer[0].at - onset_clock
                tl.add(f"v{v2} serving through the gateway ({serving_after:.1f}s after onset)")
                say(f"    v{v2} serves; {cfg.recovery:,} more applications to measure recovery")
            if v2_index is not None and len(served) - v2_index >= cfg.recovery:
                break
            if v2_index is None and (
                time.monotonic() > deadline or len(served) - onset > cfg.max_after_onset
            ):
                say("    the loop did not close in time")
                break
            if (len(served) - onset) % 500 < len(batch):
                say(
                    f"    {len(served) - onset:,} served since onset; detected={detected_index is not None} "
                    f"serving=v{served[-1].version}"
                )

        result = LoopResult(
            cfg,
            served,
            onset,
            v1,
            v2,
            detected_index,
            detected_after,
            false_alarms,
            serving_after,
            v2_index,
            tl,
            drift_report_id=report_id,
            orphans_injected=orphans,
            poisoned_injected=poisoned,
        )
        result.outcomes_reported = self.outcomes_reported
        say("==> 5/5 audit, lineage and what became of the injected labels")
        result.drift_reports = {
            r.report_id: r.created_at.ToNanoseconds() / 1e9
            for r in (await self.drift_reports())[false_alarms:]
        }
        await self._collect_governance(result)
        if poisoned:
            result.poisoned_dead_lettered = await self.dead_lettered()
        return result

    async def _collect_governance(self, result: LoopResult) -> None:
        verify = await self.registry.VerifyAuditChain(
            reg_pb.VerifyAuditChainRequest(), metadata=self._md, timeout=30
        )
        result.audit_valid = verify.valid
        result.audit_anchor = verify.message
        events = await self.registry.ListAuditEvents(
            reg_pb.ListAuditEventsRequest(use_case=self.cfg.use_case, page_size=500),
            metadata=self._md,
            timeout=30,
        )
        result.audit_events = [events]
        if result.v2_first_index is None:
            return
        pick = result.served[-1]
        deadline = time.monotonic() + 30
        while True:  # the registry indexes predictions from the predictions topic
            try:
                result.lineage = await self.registry.GetLineage(
                    reg_pb.GetLineageRequest(prediction_id=pick.prediction_id), metadata=self._md, timeout=10
                )
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
