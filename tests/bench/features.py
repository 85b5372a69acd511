"""features.freshness_p50_ms / _p99_ms: a record produced → its features readable online.

RecordAccepted events go to the records topic at ``RATE`` records/s, one per message (the
costlier form for the feature store: ingestion packs a partition's records into
RecordAcceptedBatch messages); the feature store runs as its own process (``python -m services.featurestore``,
SQLite online store) and a client polls ``GetOnlineFeatures`` for every ``SAMPLE``-th
record until the entity's online row comes from that record (or a later one). Freshness
is the time from just before the produce call to the poll that sees it (the poll
interval, ``POLL_S``, bounds the error).

Baseline, same broker, same run, same rate and batching: raw aiokafka produce → consume
latency of a plain consumer.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from aif.datagen import LoanStream
from aifactory.featurestore.v1 import featurestore_service_pb2 as pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as pb_grpc
from libs.bus import EventPublisher, Outgoing
from libs.rpc.healthcheck import check
from tests.bench.report import Figure
from tests.unit.featurestore.helpers import from_example

RATE = 1_000  # records/s
SECONDS = 15
TICK = 0.01  # produce RATE * TICK records every TICK seconds
SAMPLE = 20  # measure every 20th record (50 a second)
POLL_S = 0.05
UC = "loan_approval"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _topics(bootstrap: str, *names: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def _paced(send, n: int) -> None:  # type: ignore[no-untyped-def]
    """Call ``send(i, k)`` for chunks of k = RATE * TICK items, one chunk per TICK."""
    loop = asyncio.get_running_loop()
    per_tick = int(RATE * TICK)
    next_at = loop.time()
    for i in range(0, n, per_tick):
        await send(i, per_tick)
        next_at += TICK
        await asyncio.sleep(max(0.0, next_at - loop.time()))


async def kafka_latency(bootstrap: str) -> list[float]:
    """Produce → consume latency (ms) of raw aiokafka at RATE, same acks as the bus."""
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
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    n = RATE * SECONDS
    sent: dict[int, float] = {}
    got: list[float] = []

    async def consume() -> None:
        while len(got) < n:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.monotonic()
                got.extend((now - sent[int(r.value)]) * 1000 for r in records)

    task = asyncio.create_task(consume())

    async def send(i: int, k: int) -> None:
        at = time.monotonic()
        futures = []
        for j in range(i, min(i + k, n)):
            sent[j] = at
            futures.append(await producer.send(topic, str(j).encode(), key=str(j % 2000).encode()))
        await asyncio.gather(*futures)

    await _paced(send, n)
    await asyncio.wait_for(task, 60)
    await producer.stop()
    await consumer.stop()
    return got


class _Service:
    def __init__(self, bootstrap: str, root: Path) -> None:
        run = uuid.uuid4().hex[:8]
        self.records = f"bench.records.{run}"
        self.port = _free_port()
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "AIF_AUTH_MODE": "off",
            "AIF_KAFKA_BOOTSTRAP": bootstrap,
            "AIF_FEATURESTORE_GRPC_PORT": str(self.port),
            "AIF_FEATURESTORE_METRICS_PORT": "0",
            "AIF_FEATURESTORE_RECORDS_TOPIC": self.records,
            "AIF_FEATURESTORE_FEEDBACK_TOPIC": f"bench.feedback.{run}",
            "AIF_FEATURESTORE_DEAD_LETTER_TOPIC": f"bench.dlq.{run}",
            "AIF_FEATURESTORE_FEATURES_WRITTEN_TOPIC": f"bench.written.{run}",
            "AIF_FEATURESTORE_APP_ID": f"bench-fs-{run}",
            "AIF_FEATURESTORE_FEAST_PROJECT": f"bench{run}",
            "AIF_FEATURESTORE_FEAST_REPO": str(root / "feast"),
            "AIF_FEATURESTORE_DATA_DIR": str(root / "data"),
            "AIF_LOG_LEVEL": "WARNING",
        }
        self.log = root / "featurestore.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu_share = 0.0  # CPU cores the service used while records came at RATE

    def start(self, timeout: float = 180) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.featurestore"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not check(f"127.0.0.1:{self.port}", timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"feature store did not start; see {self.log}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def _cpu_seconds(service: _Service) -> float:
    """CPU time of the service process and its children (the online-writer process), Linux only."""
    total = 0.0
    pids = [service.proc.pid] if service.proc else []
    children: list[str] = []
    for task in Path(f"/proc/{pids[0]}/task").glob("*") if pids else []:
        try:
            children += (task / "children").read_text().split()
        except OSError:
            pass
    for pid in pids + [int(c) for c in children]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def _seq(record_id: str) -> int:
    return int(record_id.rsplit("-", 1)[1]) if record_id else -1


async def freshness(bootstrap: str) -> list[float]:
    """Produced → readable online (ms) for every SAMPLE-th record, at RATE records/s."""
    with tempfile.TemporaryDirectory(prefix="bench-fs-") as tmp:
        service = _Service(bootstrap, Path(tmp))
        await _topics(bootstrap, service.records)
        await asyncio.to_thread(service.start)
        try:
            latencies = await _measure(bootstrap, service)
            print(
                f"bench: feature store used {service.cpu_share:.2f} CPU cores at {RATE:,} records/s",
                file=sys.stderr,
            )
            return latencies
        finally:
            await asyncio.to_thread(service.stop)


async def _measure(bootstrap: str, service: _Service) -> list[float]:
    warmup = 500
    n = warmup + RATE * SECONDS
    stream = iter(
        LoanStream(
            seed=5,
            applicants=20_000,
            start=datetime.now(UTC) - timedelta(minutes=5),
            interval=timedelta(milliseconds=1),
        )
    )
    examples = [next(stream) for _ in range(n)]
    events = [
        Outgoing(service.records, from_example(UC, e), UC, key=f"{UC}/{e.entity_id}", event_id=e.record_id)
        for e in examples
    ]
    pending: dict[str, tuple[int, float]] = {}  # entity → (record seq, produced at)
    latencies: list[float] = []
    done = asyncio.Event()

    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
        EventPublisher(bootstrap, producer="bench") as publisher,
    ):
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
            for j in range(i, min(i + k, n)):
                e = examples[j]
                if j % SAMPLE == 0 and e.entity_id not in pending:
                    pending[e.entity_id] = (j, at)
            await publisher.publish_many(events[i : i + k])

        await send(0, warmup)  # the first batch also pays for table recovery and Feast warm-up
        while pending:
            await asyncio.sleep(0.05)
        cpu0 = _cpu_seconds(service)
        paced_at = time.monotonic()
        await _paced(lambda i, k: send(warmup + i, k), n - warmup)
        service.cpu_share = (_cpu_seconds(service) - cpu0) / (time.monotonic() - paced_at)
        done.set()
        await asyncio.wait_for(poller, 120)
    return latencies


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def measure(bootstrap: str) -> list[Figure]:
    base = await kafka_latency(bootstrap)
    fresh = await freshness(bootstrap)
    return [
        Figure(
            "features.freshness_p50_ms", _pct(fresh, 50), "ms", "kafka.produce_consume_p50_ms", _pct(base, 50)
        ),
        Figure(
            "features.freshness_p99_ms", _pct(fresh, 99), "ms", "kafka.produce_consume_p99_ms", _pct(base, 99)
        ),
    ]


if __name__ == "__main__":
    from aif.infra import ensure_kafka

    kafka = ensure_kafka()
    try:
        for f in asyncio.run(measure(kafka.bootstrap_servers)):
            print(f)
    finally:
        kafka.stop()  # only if this run started it
