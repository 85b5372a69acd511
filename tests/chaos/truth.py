"""Counting from sources independent of the load's ledger.

- the online store: the feature store's ``GetOnlineFeatures``, one row per entity;
- the offline dataset: ingestion's published parquet files, read directly (every stored
  row, before the dataset's own de-duplication by record id), and its ``GetDataset`` count;
- the log: the predictions and feedback topics, read from the start with a plain aiokafka
  consumer (no group, committed transactions only), batch messages unpacked;
- the monitor's joins: its ``aif.monitor.join.*`` counters on its metrics endpoint, followed
  across its restarts (:class:`JoinTally`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import grpc
import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer, TopicPartition

from aifactory.featurestore.v1 import featurestore_service_pb2 as fs_pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as fs_grpc
from aifactory.gateway.v1 import events_pb2 as _gateway_events  # noqa: F401 (registers the event types)
from aifactory.ingestion.v1 import ingestion_service_pb2 as in_pb
from aifactory.ingestion.v1 import ingestion_service_pb2_grpc as in_grpc
from libs.bus.headers import EVENT_TYPE
from libs.bus.types import message_class
from tests.chaos.load import USE_CASE, Metadata


async def online_records(target: str, md: Metadata, entities: dict[str, str]) -> dict[str, str]:
    """entity id → the record id its online row shows (absent: no row)."""
    out: dict[str, str] = {}
    ids = list(entities)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = fs_grpc.FeatureStoreServiceStub(channel)
        for i in range(0, len(ids), 500):
            reply = await stub.GetOnlineFeatures(
                fs_pb.GetOnlineFeaturesRequest(use_case=USE_CASE, entity_ids=ids[i : i + 500]),
                metadata=md,
                timeout=30,
            )
            out.update({row.entity_id: row.record_id for row in reply.rows if row.found})
    return out


def offline_rows(dataset_dir: Path) -> Counter[str]:
    """record id → rows stored for it in the published files of the raw dataset."""
    manifest = dataset_dir / "_manifest.jsonl"
    files: dict[str, None] = {}
    if manifest.exists():
        for line in manifest.read_bytes().splitlines(keepends=True):
            if line.endswith(b"\n"):
                files.update({f["path"]: None for f in json.loads(line)["added"]})
    counts: Counter[str] = Counter()
    for rel in files:
        counts.update(pq.read_table(dataset_dir / rel, columns=["_record_id"]).column(0).to_pylist())
    return counts


async def dataset_count(target: str, md: Metadata) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await in_grpc.IngestionServiceStub(channel).GetDataset(
            in_pb.GetDatasetRequest(use_case=USE_CASE), metadata=md, timeout=30
        )
    return reply.dataset.record_count


def _events(event_type: str, value: bytes) -> Iterable[object]:
    """The event(s) one Kafka message holds: itself, or each member of a batch message."""
    message = message_class(event_type).FromString(value)
    fields = message.DESCRIPTOR.fields
    if event_type.endswith("Batch") and len(fields) == 1 and fields[0].label == fields[0].LABEL_REPEATED:
        return list(getattr(message, fields[0].name))
    return [message]


async def topic_ids(bootstrap: str, topic: str, id_field: str, keep: str = "") -> Counter[str]:
    """``id_field`` of every event on ``topic`` (committed), with how often each appears;
    events whose boolean field ``keep`` is set are skipped when ``keep`` starts with '!'."""
    # No group: the consumer takes every partition of the topic itself and commits nothing.
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    counts: Counter[str] = Counter()
    try:
        partitions = await _assigned(consumer)
        if not partitions:
            return counts
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        deadline = time.monotonic() + 120
        idle = 0  # a partition whose tail is a transaction marker never reaches its end offset
        while remaining and time.monotonic() < deadline and idle < 5:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers or ())
                    event_type = (headers.get(EVENT_TYPE) or b"").decode()
                    for event in _events(event_type, record.value or b""):
                        if keep.startswith("!") and getattr(event, keep[1:]):
                            continue
                        counts[getattr(event, id_field)] += 1
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return counts


async def _assigned(consumer: AIOKafkaConsumer) -> list[TopicPartition]:
    """The partitions the group-less consumer took (empty when the topic does not exist)."""
    for _ in range(50):
        if consumer.assignment():
            return sorted(consumer.assignment())
        await asyncio.sleep(0.1)
    return []


_JOIN = re.compile(
    r'^aif_monitor_join_(\w+?)(?:_total)?\{[^}]*use_case="' + USE_CASE + r'"[^}]*\}\s+([0-9.e+]+)$'
)


def scrape_joins(metrics_url: str) -> dict[str, float] | None:
    """The monitor's join counters now (None: the endpoint does not answer)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _JOIN.match(line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


class JoinTally:
    """The monitor's join counters, followed across its restarts.

    The monitor restores its join state (counts included) with its consumer offsets, so
    its counter after the last restart is the whole count: a monitor that lost its state
    comes back from zero and shows the joins of the old process as lost (the suite fails
    rather than passes on a guess). Every drop of the counter, from the last scrape before
    a kill to the first after, is kept in ``rewinds`` for the table's note.
    """

    def __init__(self, metrics_url: str) -> None:
        self.url = metrics_url
        self.last: dict[str, float] = {}
        self.rewinds: list[tuple[int, int]] = []

    def scrape(self) -> None:
        now = scrape_joins(self.url)
        if now is None:
            return
        before, after = self.last.get("joined", 0.0), now.get("joined", 0.0)
        if after < before:
            self.rewinds.append((int(before), int(after)))
        self.last = now

    def bank(self) -> None:
        """Called just before the monitor is killed: its counts as late as can be."""
        self.scrape()

    def total(self, name: str) -> int:
        return int(self.last.get(name, 0.0))
