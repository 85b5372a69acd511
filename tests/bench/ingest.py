"""ingest.only_records_per_s: loan records through ingestion alone vs raw aiokafka produce+consume.

Both sides move the same N loan-application JSON payloads through the same broker in
the same process, one right after the other:

- baseline: a plain producer (acks=all, idempotent) sends them to a topic, a consumer
  group reads them back, parses each as JSON and commits per batch;
- ingestion: the same producer sends them to a raw topic while the ingestion service,
  its own process as deployed (decode, contract, masking, parquet dataset, one Kafka
  transaction per poll), turns them into RecordAccepted events (sent as RecordAcceptedBatch
  messages, as deployed), and a read_committed consumer reads those back. Timing starts once a warm-up batch has gone through (the
  process has started and joined its group).

Each figure is N over the time from the first send to the last record read, so the
ratio is what ingestion costs on top of moving the bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from aif.datagen import LoanStream, to_json
from libs.bus import headers as h
from tests.bench.procs import cpu_seconds
from tests.bench.report import Figure

ROOT = Path(__file__).resolve().parents[2]
N = 20_000
WARMUP = 200
BATCH = 1_000
PARTITIONS = 3


def payloads(n: int | None = None) -> list[tuple[bytes, bytes]]:
    """(key, JSON) of n (default ``N``) loan applications, each with its record id."""
    n = N if n is None else n
    return [
        (e.entity_id.encode(), to_json({**e.record, "record_id": e.record_id}))
        for e, _ in zip(LoanStream(seed=99), range(n), strict=False)
    ]


async def _topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    await producer.start()
    try:
        for i in range(0, len(items), BATCH):
            await asyncio.gather(*[await producer.send(topic, v, key=k) for k, v in items[i : i + BATCH]])
    finally:
        await producer.stop()


async def _consume(
    bootstrap: str,
    topic: str,
    n: int,
    *,
    group: str | None,
    parse: bool,
    isolation_level: str = "read_uncommitted",
) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )
    await consumer.start()
    seen = 0
    try:
        while seen < n:
            for tp, records in (await consumer.getmany(timeout_ms=200, max_records=BATCH)).items():
                if parse:
                    for r in records:
                        json.loads(r.value)
                    seen += len(records)
                else:  # the records topic: a RecordAcceptedBatch message says how many it holds
                    seen += sum(_count(r) for r in records)
                if group:
                    await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await consumer.stop()


def _count(record: Any) -> int:
    return next((int(v) for k, v in record.headers or () if k == h.BATCH_SIZE), 1)


async def _raw(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> float:
    started = time.perf_counter()
    await asyncio.gather(
        _produce(bootstrap, topic, items),
        _consume(bootstrap, topic, len(items), group=f"bench-raw-{topic}", parse=True),
    )
    return len(items) / (time.perf_counter() - started)


async def _ingestion(bootstrap: str, run: str, items: list[tuple[bytes, bytes]], data_dir: Path) -> float:
    """The ingestion service as its own process (as deployed), fed and read by this one."""
    prefix = f"bench.{run}"
    env = {
        **os.environ,
        "AIF_AUTH_MODE": "off",
        "AIF_LOG_LEVEL": "WARNING",
        "AIF_KAFKA_BOOTSTRAP": bootstrap,
        **{
            f"AIF_INGESTION_{k}": v
            for k, v in {
                "GRPC_PORT": "0",
                "METRICS_PORT": "0",
                "RAW_TOPIC_PATTERN": prefix + ".{use_case}.raw",
                "RECORDS_TOPIC": f"{prefix}.records",
                "DEAD_LETTER_TOPIC": f"{prefix}.dlq",
                "QUALITY_TOPIC": f"{prefix}.quality",
                "CONSUMER_GROUP": f"bench-ingestion-{run}",
                "INSTANCE_ID": run,
                "DATA_DIR": str(data_dir),
                "PRIVACY_SALT": "bench-salt",
            }.items()
        },
    }
    raw_topic, records_topic = f"{prefix}.loan_approval.raw", f"{prefix}.records"
    await _topics(
        bootstrap,
        raw_topic,
        f"{prefix}.image_segments.raw",
        records_topic,
        f"{prefix}.dlq",
        f"{prefix}.quality",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.ingestion"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        warm = payloads(WARMUP)  # not timed: the process has started and joined its group after these
        await asyncio.gather(
            _produce(bootstrap, raw_topic, warm),
            _consume(
                bootstrap,
                records_topic,
                WARMUP,
                group=f"bench-reader-{run}",
                parse=False,
                isolation_level="read_committed",
            ),
        )
        cpu = cpu_seconds(proc.pid)
        started = time.perf_counter()
        await asyncio.gather(
            _produce(bootstrap, raw_topic, items),
            _consume(
                bootstrap,
                records_topic,
                len(items),
                group=f"bench-reader-{run}",
                parse=False,
                isolation_level="read_committed",
            ),
        )
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(proc.pid) - cpu
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    print(
        f"bench: the ingestion process used {cpu / len(items) * 1e6:.0f} us of CPU per record "
        f"({len(items) / cpu:,.0f} records/s per core)",
        file=sys.stderr,
    )
    return len(items) / elapsed


async def measure_ingestion(bootstrap: str) -> list[Figure]:
    """ingest.only_records_per_s with aiokafka.produce_consume_records_per_s as its baseline."""
    items = payloads()
    run = uuid.uuid4().hex[:8]
    await _topics(bootstrap, f"bench.{run}.baseline")
    raw = await _raw(bootstrap, f"bench.{run}.baseline", items)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        ingest = await _ingestion(bootstrap, run, items, Path(tmp))
    print(f"bench: ingestion {ingest:,.0f} records/s, raw aiokafka {raw:,.0f} records/s", file=sys.stderr)
    return [
        Figure(
            "ingest.only_records_per_s", ingest, "records/s", "aiokafka.produce_consume_records_per_s", raw
        )
    ]
