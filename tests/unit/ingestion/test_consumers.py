"""The raw-topic pipeline's batch logic with a fake consumer and publisher (the broker path is in
tests/integration/test_ingestion.py): a failed transaction leaves nothing behind and is retried."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from opentelemetry.sdk.metrics import MeterProvider

from aifactory.ingestion.v1 import events_pb2
from libs.bus.compression import SkippedRecord
from libs.usecase import UseCase
from services.ingestion import consumers
from services.ingestion.consumers import RawPipeline
from services.ingestion.publisher import Fatal, Outgoing
from services.ingestion.quality import QualityTracker
from services.ingestion.records import UseCaseIngestor
from services.ingestion.store import RawDataset

TOPIC = "aif.loan_approval.raw"
TP = TopicPartition(TOPIC, 0)


def raw(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, b"k", value, None, 1, len(value), [])


class FakeConsumer:
    def __init__(self, records: list[ConsumerRecord]) -> None:
        self.records = records
        self.position = 0
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        await asyncio.sleep(0)
        # After a seek, smaller polls: the retried batches cover other offset ranges.
        limit = 2 if self.seeks else max_records
        batch = [r for r in self.records if r.offset >= self.position][:limit]
        if batch:
            self.position = batch[-1].offset + 1
        return {TP: batch} if batch else {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.position = offset


class FlakyPublisher:
    """Fails the first transaction, as a broker hiccup would."""

    def __init__(self) -> None:
        self.attempts = 0
        self.committed: list[tuple[list[Outgoing], dict[TopicPartition, int], str]] = []

    async def commit(
        self, messages: list[Outgoing], offsets: dict[TopicPartition, int], group_id: str
    ) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise KafkaError("coordinator moved")
        self.committed.append((list(messages), dict(offsets), group_id))


def make_pipeline(
    tmp_path: Path, loan: UseCase, publisher: FlakyPublisher, **options: Any
) -> tuple[RawPipeline, RawDataset]:
    """A pipeline over loan_approval's raw topic, its dataset under ``tmp_path``; the
    consumer is set by the test."""
    ingestor = UseCaseIngestor(loan, salt=b"s", max_payload_bytes=4096)
    dataset = RawDataset(tmp_path, {"loan_approval": loan}, {"loan_approval": ingestor.privacy})
    quality = QualityTracker({"loan_approval": loan}, MeterProvider().get_meter("t"))
    pipeline = RawPipeline(
        "unused:9092",
        {TOPIC: ingestor},
        dataset,
        quality,
        publisher,  # type: ignore[arg-type]
        group_id="g",
        records_topic="recs",
        dead_letter_topic="dlq",
        **options,
    )
    return pipeline, dataset


async def test_failed_transaction_is_discarded_and_retried(
    tmp_path: Path, loan: UseCase, record: dict[str, Any]
) -> None:
    publisher = FlakyPublisher()
    pipeline, dataset = make_pipeline(tmp_path, loan, publisher, retry_backoff_s=0.01)
    values = [json.dumps({**record, "record_id": f"r{i}"}).encode() for i in range(3)] + [b"not json"]
    consumer = FakeConsumer([raw(i, v) for i, v in enumerate(values)])
    pipeline._consumer = consumer  # type: ignore[assignment]
    task = asyncio.create_task(pipeline._loop())
    async with asyncio.timeout(10):
        while pipeline.processed < 4:
            await asyncio.sleep(0.01)
    await pipeline.stop()
    await task

    assert publisher.attempts == 3 and consumer.seeks == [(TP, 0)]
    assert [(offsets, group) for _, offsets, group in publisher.committed] == [({TP: 2}, "g"), ({TP: 4}, "g")]
    messages = [m for batch, _, _ in publisher.committed for m in batch]
    assert [m.topic for m in messages] == ["recs", "recs", "recs", "dlq"]
    accepted = [events_pb2.RecordAccepted.FromString(m.value) for m in messages[:3]]
    assert [a.record.record_id for a in accepted] == ["r0", "r1", "r2"]
    rejected = events_pb2.RecordRejected.FromString(messages[3].value)
    # loan_approval has personal fields, and a payload that cannot be read cannot be masked:
    # the dead letter keeps its size, not its bytes.
    assert rejected.original == b"" and rejected.original_size == len(b"not json")
    assert (rejected.source_topic, rejected.source_offset) == (TOPIC, 3)
    # the failed attempt's file (offsets 0-3) is gone; the committed ones are the dataset,
    # at the version the last records carry
    files = sorted(f.name.rsplit(".", 2)[0] for f in (tmp_path / "loan_approval").rglob("*.parquet"))
    assert files == [
        f"part-k-{TOPIC}-0-000000000000-000000000001",
        f"part-k-{TOPIC}-0-000000000002-000000000003",
    ]
    assert dataset.get("loan_approval").version == accepted[2].dataset.version != accepted[0].dataset.version
    assert dataset.read("loan_approval").num_rows == 3


async def test_a_batch_the_consumer_skipped_is_dead_lettered_without_payload_and_committed_past(
    tmp_path: Path, loan: UseCase, record: dict[str, Any]
) -> None:
    publisher = FlakyPublisher()
    publisher.attempts = 1  # no hiccup here
    pipeline, dataset = make_pipeline(tmp_path, loan, publisher)
    reason = f"record batch {TOPIC}/0 offsets 1-20 skipped, not buffered: past the cap of 8 bytes per batch"
    skipped = SkippedRecord(TOPIC, 0, 20, 0, 0, None, None, None, -1, -1, (), reason=reason, first_offset=1)
    valid = [json.dumps({**record, "record_id": f"r{i}"}).encode() for i in range(2)]
    consumer = FakeConsumer([raw(0, valid[0]), skipped, raw(21, valid[1])])
    pipeline._consumer = consumer  # type: ignore[assignment]
    task = asyncio.create_task(pipeline._loop())
    async with asyncio.timeout(10):
        while pipeline.processed < 3:
            await asyncio.sleep(0.01)
    await pipeline.stop()
    await task

    [(messages, offsets, _)] = publisher.committed
    assert offsets == {TP: 22}
    assert [m.topic for m in messages] == ["recs", "dlq", "recs"]
    rejected = events_pb2.RecordRejected.FromString(messages[1].value)
    assert (rejected.source_topic, rejected.source_offset) == (TOPIC, 20)
    assert rejected.original == b"" and rejected.original_size == 0
    assert [(v.code, v.message) for v in rejected.violations] == [("too_large", reason)]
    assert dataset.read("loan_approval").num_rows == 2


class HangingPublisher(FlakyPublisher):
    """A transaction that never returns, as a write to a broker that stopped answering."""

    async def commit(
        self, messages: list[Outgoing], offsets: dict[TopicPartition, int], group_id: str
    ) -> None:
        self.attempts += 1
        await asyncio.Event().wait()


class FakeLag:
    """Stands in for the group's ConsumerLag: stalled once told so, counting the questions."""

    def __init__(self) -> None:
        self.stuck = False
        self.asked = 0

    async def stalled(self) -> str | None:
        self.asked += 1
        return "records waiting and no offset committed for 61s (limit 60s)" if self.stuck else None


async def test_a_batch_that_never_returns_ends_the_pipeline_with_the_reason(
    tmp_path: Path, loan: UseCase, record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "WATCH_INTERVAL_S", 0.01)
    publisher = HangingPublisher()
    pipeline, _ = make_pipeline(tmp_path, loan, publisher)
    pipeline._consumer = FakeConsumer([raw(0, json.dumps(record).encode())])  # type: ignore[assignment]
    lag = FakeLag()
    pipeline._lag = lag  # type: ignore[assignment]
    loop = asyncio.create_task(pipeline._loop())
    watched = asyncio.create_task(pipeline._watched(loop))
    async with asyncio.timeout(10):
        while not publisher.attempts or lag.asked < 3:
            await asyncio.sleep(0.01)
    assert not watched.done(), "no stall until the lag says so"
    lag.stuck = True
    with pytest.raises(Fatal, match=r"ingestion pipeline stalled: .*61s.*; a batch in flight for \d+s"):
        async with asyncio.timeout(10):
            await watched
    assert loop.cancelled()
    # The abandoned batch's staged file is gone: the restart reads the batch again.
    assert not list((tmp_path / "loan_approval").rglob("*.parquet"))


async def test_a_batch_being_retried_is_left_to_the_retry_policy(
    tmp_path: Path, loan: UseCase, record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "WATCH_INTERVAL_S", 0.01)

    class Failing(FlakyPublisher):
        async def commit(self, *args: Any) -> None:
            self.attempts += 1
            raise KafkaError("coordinator moved")

    publisher = Failing()
    pipeline, _ = make_pipeline(tmp_path, loan, publisher, retry_backoff_s=0.01)
    pipeline._consumer = FakeConsumer([raw(0, json.dumps(record).encode())])  # type: ignore[assignment]
    lag = FakeLag()
    lag.stuck = True
    pipeline._lag = lag  # type: ignore[assignment]
    watched = asyncio.create_task(pipeline._watched(asyncio.create_task(pipeline._loop())))
    async with asyncio.timeout(10):
        while publisher.attempts < 3:
            await asyncio.sleep(0.01)
    assert not watched.done() and lag.asked == 0, "judged while the retry policy was in charge"
    await pipeline.stop()
    async with asyncio.timeout(10):
        await watched
