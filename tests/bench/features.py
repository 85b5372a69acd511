"""features.freshness_p50_ms / _p99_ms: a producer's send → the record's features readable online.

The path a record takes in production: a producer sends loan applications as JSON to the
raw topic at ``RATE`` records/s; the ingestion service (its own process, as deployed:
validation, masking, dataset, transactions) publishes them to the records topic; the feature
store (its own process, ``python -m services.featurestore``, SQLite online store) turns them
into online rows. A client polls ``GetOnlineFeatures`` for every ``SAMPLE``-th record until
the entity's online row comes from that record (or a later one). Freshness is the time from
just before the producer's send to the poll that sees it (the poll interval, ``POLL_S``,
bounds the error).

Baseline, same broker, same run, same payloads, rate and batching: a plain aiokafka
producer → consumer (produce → consume latency of the raw topic alone). Both sides send
the same ``WARMUP`` records first and leave them out (connections, group joins, the
services' first batches), then measure ``RATE * SECONDS`` records.

The feature-store process helpers (:class:`FeatureStoreProcess`, :func:`load_entities`)
are also what the gateway bench reads its entity features from.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from aif.datagen import Example, LoanStream, to_json
from aifactory.featurestore.v1 import featurestore_service_pb2 as pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as pb_grpc
from libs.bus import EventPublisher, Outgoing
from libs.rpc.healthcheck import check
from tests.bench.report import Figure
from tests.unit.featurestore.helpers import from_example

ROOT = Path(__file__).resolve().parents[2]
RATE = 1_000  # records/s
SECONDS = 15
WARMUP = 500  # records sent first on both sides, not measured
TICK = 0.01  # produce RATE * TICK records every TICK seconds
SAMPLE = 20  # measure every 20th record (50 a second)
POLL_S = 0.05
UC = "loan_approval"
PARTITIONS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _topics(bootstrap: str, *names: str, partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def _paced(send: Callable[[int, int], Awaitable[None]], n: int) -> None:
    """Call ``send(i, k)`` for chunks of k = RATE * TICK items, one chunk per TICK."""
    loop = asyncio.get_running_loop()
    per_tick = int(RATE * TICK)
    next_at = loop.time()
    for i in range(0, n, per_tick):
        await send(i, min(per_tick, n - i))
        next_at += TICK
        await asyncio.sleep(max(0.0, next_at - loop.time()))


def examples(n: int, *, seed: int = 5, applicants: int = 20_000) -> list[Example]:
    """Loan applications with event times ending about now (inside the features' ttl)."""
    stream = iter(
        LoanStream(
            seed=seed,
            applicants=applicants,
            start=datetime.now(UTC) - timedelta(milliseconds=n + 60_000),
            interval=timedelta(milliseconds=1),
        )
    )
    return [next(stream) for _ in range(n)]


def _raw_json(e: Example) -> tuple[bytes, bytes]:
    return e.entity_id.encode(), to_json({**e.record, "record_id": e.record_id})


def _producer(bootstrap: str) -> AIOKafkaProducer:
    # The same producer on both sides: acks=all and idempotent, as the bus and an app would.
    return AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")


# -- the baseline: the raw topic alone --------------------------------------------------


async def kafka_latency(bootstrap: str, items: list[tuple[bytes, bytes]], warmup: int) -> list[float]:
    """Produce → consume latency (ms) of raw aiokafka at RATE, the first ``warmup`` left out."""
    topic = f"bench.latency.{uuid.uuid4().hex[:8]}"
    await _topics(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    producer = _producer(bootstrap)
    await producer.start()
    index = {key_value[1]: i for i, key_value in enumerate(items)}
    sent: dict[int, float] = {}
    got: list[float] = []
    seen = 0

    async def consume() -> None:
        nonlocal seen
        while seen < len(items):
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.monotonic()
                for r in records:
                    i = index[r.value]
                    seen += 1
                    if i >= warmup:
                        got.append((now - sent[i]) * 1000)

    task = asyncio.create_task(consume())

    async def send(i: int, k: int) -> None:
        at = time.monotonic()
        futures = []
        for j in range(i, i + k):
            sent[j] = at
            key, value = items[j]
            futures.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*futures)

    try:
        await send(0, warmup)
        while seen < warmup:  # the same warm-up as the measured side: all through first
            await asyncio.sleep(0.05)
        await _paced(lambda i, k: send(warmup + i, k), len(items) - warmup)
        await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
        await producer.stop()
        await consumer.stop()
    return got


# -- the services as processes ------------------------------------------------------------


class _Process:
    """One service as its own process, stopped with SIGTERM (then SIGKILL)."""

    module = ""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "AIF_AUTH_MODE": "off", **env}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


class FeatureStoreProcess(_Process):
    """``python -m services.featurestore`` on its own topics, Feast repo and online store."""

    module = "services.featurestore"

    def __init__(
        self, bootstrap: str, root: Path, *, online_store: str = "sqlite", redis_url: str = ""
    ) -> None:
        run = uuid.uuid4().hex[:8]
        root.mkdir(parents=True, exist_ok=True)
        self.records = f"bench.records.{run}"
        self.port = _free_port()
        self.repo = root / "feast"
        self.online_store = online_store
        env = {
            "AIF_KAFKA_BOOTSTRAP": bootstrap,
            "AIF_FEATURESTORE_GRPC_PORT": str(self.port),
            "AIF_FEATURESTORE_METRICS_PORT": "0",
            "AIF_FEATURESTORE_RECORDS_TOPIC": self.records,
            "AIF_FEATURESTORE_FEEDBACK_TOPIC": f"bench.feedback.{run}",
            "AIF_FEATURESTORE_DEAD_LETTER_TOPIC": f"bench.dlq.{run}",
            "AIF_FEATURESTORE_FEATURES_WRITTEN_TOPIC": f"bench.written.{run}",
            "AIF_FEATURESTORE_APP_ID": f"bench-fs-{run}",
            # Entity keys in a shared Redis are scoped by the project: a run of its own.
            "AIF_FEATURESTORE_FEAST_PROJECT": f"bench{run}",
            "AIF_FEATURESTORE_FEAST_REPO": str(self.repo),
            "AIF_FEATURESTORE_DATA_DIR": str(root / "data"),
            "AIF_FEATURESTORE_ONLINE_STORE": online_store,
            "AIF_LOG_LEVEL": "WARNING",
        }
        if redis_url:
            env["AIF_FEATURESTORE_REDIS_URL"] = redis_url
        super().__init__(env, root / "featurestore.log")
        self.target = f"127.0.0.1:{self.port}"

    async def create_topics(self, bootstrap: str) -> None:
        await _topics(bootstrap, self.records)

    def start(self, timeout: float = 180) -> None:
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not check(self.target, timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"feature store did not start; see {self.log}")
            time.sleep(0.2)


class IngestionProcess(_Process):
    """``python -m services.ingestion`` reading ``raw_topic``, publishing to ``records_topic``."""

    module = "services.ingestion"

    def __init__(self, bootstrap: str, root: Path, records_topic: str) -> None:
        run = uuid.uuid4().hex[:8]
        root.mkdir(parents=True, exist_ok=True)
        self.prefix = f"bench.{run}"
        self.raw_topic = f"{self.prefix}.{UC}.raw"
        self.records_topic = records_topic
        env = {
            "AIF_KAFKA_BOOTSTRAP": bootstrap,
            "AIF_LOG_LEVEL": "WARNING",
            **{
                f"AIF_INGESTION_{k}": v
                for k, v in {
                    "GRPC_PORT": "0",
                    "METRICS_PORT": "0",
                    "RAW_TOPIC_PATTERN": self.prefix + ".{use_case}.raw",
                    "RECORDS_TOPIC": records_topic,
                    "DEAD_LETTER_TOPIC": f"{self.prefix}.dlq",
                    "QUALITY_TOPIC": f"{self.prefix}.quality",
                    "CONSUMER_GROUP": f"bench-ingestion-{run}",
                    "INSTANCE_ID": run,
                    "DATA_DIR": str(root / "ingestion"),
                    "PRIVACY_SALT": "bench-salt",
                    "TOPIC_PARTITIONS": str(PARTITIONS),
                }.items()
            },
        }
        super().__init__(env, root / "ingestion.log")

    async def create_topics(self, bootstrap: str) -> None:
        await _topics(
            bootstrap,
            self.raw_topic,
            f"{self.prefix}.image_segments.raw",
            f"{self.prefix}.dlq",
            f"{self.prefix}.quality",
        )


def _seq(record_id: str) -> int:
    return int(record_id.rsplit("-", 1)[1]) if record_id else -1


async def load_entities(
    bootstrap: str, service: FeatureStoreProcess, rows: list[Example], timeout: float = 120
) -> None:
    """Publish ``rows`` as ingestion would (RecordAccepted) and wait until each entity's
    online row shows its last record."""
    events = [
        Outgoing(service.records, from_example(UC, e), UC, key=f"{UC}/{e.entity_id}", event_id=e.record_id)
        for e in rows
    ]
    last = {e.entity_id: e.record_id for e in rows}
    async with EventPublisher(bootstrap, producer="bench") as publisher:
        for i in range(0, len(events), 500):
            await publisher.publish_many(events[i : i + 500])
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(service.target) as channel:
        stub = pb_grpc.FeatureStoreServiceStub(channel)
        while True:
            reply = await stub.GetOnlineFeatures(
                pb.GetOnlineFeaturesRequest(use_case=UC, entity_ids=list(last)), timeout=30
            )
            if all(r.found and r.record_id == last[r.entity_id] for r in reply.rows):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"bench: entity features not online after {timeout:.0f}s; see {service.log}"
                )
            await asyncio.sleep(0.2)


# -- the measured path: producer → ingestion → feature store → online read ---------------


async def freshness(bootstrap: str, rows: list[Example], warmup: int) -> list[float]:
    """Producer's send → readable online (ms) for every SAMPLE-th record after the warm-up."""
    with tempfile.TemporaryDirectory(prefix="bench-fs-") as tmp:
        service = FeatureStoreProcess(bootstrap, Path(tmp))
        ingestion = IngestionProcess(bootstrap, Path(tmp), service.records)
        await service.create_topics(bootstrap)
        await ingestion.create_topics(bootstrap)
        try:
            await asyncio.to_thread(service.start)
            ingestion.spawn()
            return await _measure(bootstrap, service, ingestion, rows, warmup)
        finally:
            ingestion.stop()
            await asyncio.to_thread(service.stop)


async def _measure(
    bootstrap: str,
    service: FeatureStoreProcess,
    ingestion: IngestionProcess,
    rows: list[Example],
    warmup: int,
) -> list[float]:
    items = [_raw_json(e) for e in rows]
    pending: dict[str, tuple[int, float]] = {}  # entity → (record seq, sent at)
    latencies: list[float] = []
    done = asyncio.Event()
    producer = _producer(bootstrap)
    await producer.start()
    try:
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = pb_grpc.FeatureStoreServiceStub(channel)

            async def poll() -> None:
                while not (done.is_set() and not pending):
                    ids = list(pending)
                    if ids:
                        reply = await stub.GetOnlineFeatures(
                            pb.GetOnlineFeaturesRequest(use_case=UC, entity_ids=ids, feature_names=["loan"]),
                            timeout=30,
                        )
                        now = time.monotonic()
                        for row in reply.rows:
                            seq, at = pending.get(row.entity_id, (None, 0.0))
                            if seq is not None and _seq(row.record_id) >= seq:
                                del pending[row.entity_id]
                                if seq >= warmup:
                                    latencies.append((now - at) * 1000)
                    await asyncio.sleep(POLL_S)

            poller = asyncio.create_task(poll())

            async def send(i: int, k: int) -> None:
                at = time.monotonic()
                for j in range(i, i + k):
                    e = rows[j]
                    if (j % SAMPLE == 0 or j < warmup) and e.entity_id not in pending:
                        pending[e.entity_id] = (_seq(e.record_id), at)
                futures = [
                    await producer.send(ingestion.raw_topic, v, key=key) for key, v in items[i : i + k]
                ]
                await asyncio.gather(*futures)

            # The warm-up pays for group joins, table recovery and Feast's first writes; it is
            # sent and read through exactly as the baseline's is.
            await send(0, warmup)
            deadline = time.monotonic() + 180
            while pending:
                if time.monotonic() > deadline or (ingestion.proc and ingestion.proc.poll() is not None):
                    raise RuntimeError(
                        f"bench: the warm-up never came through; see {ingestion.log}, {service.log}"
                    )
                await asyncio.sleep(0.05)
            await _paced(lambda i, k: send(warmup + i, k), len(rows) - warmup)
            done.set()
            await asyncio.wait_for(poller, 120)
    finally:
        await producer.stop()
    return latencies


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def measure(bootstrap: str) -> list[Figure]:
    rows = examples(WARMUP + RATE * SECONDS)
    base = await kafka_latency(bootstrap, [_raw_json(e) for e in rows], WARMUP)
    fresh = await freshness(bootstrap, rows, WARMUP)
    note = f"ms (producer send → online read, {RATE:,}/s, {len(fresh)} samples)"
    return [
        Figure(
            "features.freshness_p50_ms", _pct(fresh, 50), note, "kafka.produce_consume_p50_ms", _pct(base, 50)
        ),
        Figure(
            "features.freshness_p99_ms", _pct(fresh, 99), note, "kafka.produce_consume_p99_ms", _pct(base, 99)
        ),
    ]


if __name__ == "__main__":
    from aif.infra import ensure_kafka
    from tests.bench.report import render

    kafka = ensure_kafka()
    try:
        print(render(asyncio.run(measure(kafka.bootstrap_servers))))
    finally:
        kafka.stop()  # only if this run started it
