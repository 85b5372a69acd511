"""The prediction log: events as the contract says, personal data hashed or dropped,
a bounded buffer that drops and counts, retries, and a flush on close."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import numpy as np
import pytest

from aifactory.gateway.v1 import events_pb2
from libs.errors import ConfigError, Unavailable
from libs.usecase import UseCase, load_default
from services.gateway.inputs import InputSchema
from services.gateway.predlog import PredictionLog, Privacy, Served

LOAN = load_default()["loan_approval"]


def personal(uc: UseCase) -> UseCase:
    fields = dict(uc.fields)
    fields["salary"] = fields["salary"].model_copy(update={"pii": "hash"})
    fields["age"] = fields["age"].model_copy(update={"pii": "drop"})
    fields["applicant_id"] = fields["applicant_id"].model_copy(update={"pii": "hash"})
    return uc.model_copy(update={"fields": fields})


class FakeBulk:
    producer_name = "gateway"

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.failures = 0
        self.lost_acks = 0  # publishes that reach "Kafka" but fail for the sender
        self.lookups: list[int] = []  # since_ms of each logged_among
        self.slow_lookups = 0  # lookups that time out

    async def publish(self, topic: str, records: list[Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("kafka down")
        self.records += [(topic, r) for r in records]
        if self.lost_acks:
            self.lost_acks -= 1
            raise TimeoutError("no answer from kafka")

    async def logged_among(self, topic: str, event_ids: set[bytes], since_ms: int) -> set[bytes]:
        self.lookups.append(since_ms)
        if self.slow_lookups:
            self.slow_lookups -= 1
            raise Unavailable("reading preds back took longer than 30s")
        return {r.event_id for t, r in self.records if t == topic} & event_ids


def entry(uc: UseCase, rows: int = 2, **kw: Any) -> Served:
    x = np.arange(rows * 25, dtype=np.float32).reshape(rows, 25)
    x[0, 1] = np.nan
    out = np.tile(np.array([0.25, 0.75], dtype=np.float32), (rows, 1))
    return Served(
        uc.name,
        uc.name,
        3,
        "champion",
        [f"p{i}" for i in range(rows)],
        [f"e{i}" for i in range(rows)],
        x,
        out,
        1234,
        "t" * 32,
        **kw,
    )


async def drained(log: PredictionLog) -> None:
    """Until the flusher has published every buffered entry (within 5 s)."""
    async with asyncio.timeout(5):
        while log.buffered:
            await asyncio.sleep(0.01)


def log_for(uc: UseCase, bulk: FakeBulk, **kw: Any) -> PredictionLog:
    return PredictionLog(
        bulk,
        "preds",
        {uc.name: uc},
        {uc.name: InputSchema(uc)},
        salt="s3cret",  # type: ignore[arg-type]
        flush_ms=5,
        **kw,
    )


async def test_events_follow_the_contract() -> None:
    bulk = FakeBulk()
    log = log_for(LOAN, bulk)
    log.start()
    assert log.offer(entry(LOAN, traceparent="00-" + "t" * 32 + "-" + "s" * 16 + "-01"))
    await log.close()
    assert log.logged == 2 and len(bulk.records) == 2
    topic, record = bulk.records[0]
    event = events_pb2.PredictionLogged.FromString(record.value)
    headers = dict(record.headers)
    assert topic == "preds" and record.key == b"p0" and headers["aif-event-id"] == b"p0"
    assert headers["aif-event-type"] == b"aifactory.gateway.v1.PredictionLogged"
    assert headers["traceparent"].startswith(b"00-ttt")
    assert event.model.version == 3 and event.entity_id == "e0" and event.alias == "champion"
    assert event.latency_us == 1234 and event.trace_id == "t" * 32
    assert event.features["salary"].double_value == 0.0
    assert event.features["commission"].WhichOneof("kind") is None  # NaN: present, missing
    assert event.output.double_value == pytest.approx(0.75) and event.outputs["label"].int64_value == 1


async def test_personal_data_is_hashed_or_dropped() -> None:
    uc = personal(LOAN)
    bulk = FakeBulk()
    log = log_for(uc, bulk)
    log.start()
    log.offer(entry(uc, rows=1))
    await log.close()
    event = events_pb2.PredictionLogged.FromString(bulk.records[0][1].value)
    assert "age" not in event.features
    salary = event.features["salary"].string_value
    assert len(salary) == 16 and salary != "0.0"
    # loan_to_salary reads salary too: hashed; loan does not: clear.
    assert event.features["loan_to_salary"].WhichOneof("kind") == "string_value"
    assert event.features["loan"].WhichOneof("kind") == "double_value"
    assert event.entity_id not in ("", "e0") and len(event.entity_id) == 16
    with pytest.raises(ConfigError):
        Privacy(uc, salt="")


async def test_full_buffer_drops_and_counts_never_blocks() -> None:
    bulk = FakeBulk()
    log = log_for(LOAN, bulk, capacity=3)
    assert log.offer(entry(LOAN, rows=2))
    assert not log.offer(entry(LOAN, rows=2))  # would exceed 3
    assert log.offer(entry(LOAN, rows=1))
    assert log.dropped == 2 and log.buffered == 3
    log.start()
    await log.close()
    assert log.logged == 3


async def test_failed_publish_keeps_entries_and_retries() -> None:
    bulk = FakeBulk()
    bulk.failures = 2
    log = log_for(LOAN, bulk)
    log.start()
    log.offer(entry(LOAN, rows=2))
    await drained(log)
    assert log.failed_publishes == 2 and log.dropped == 0 and len(bulk.records) == 2
    await log.close()


async def test_a_publish_that_reached_kafka_unanswered_is_not_sent_again() -> None:
    bulk = FakeBulk()
    bulk.lost_acks = 1
    log = log_for(LOAN, bulk)
    log.start()
    log.offer(entry(LOAN, rows=2))
    await drained(log)
    log.offer(dataclasses.replace(entry(LOAN, rows=1), prediction_ids=["q0"]))  # nothing in doubt now
    await log.close()
    ids = [r.event_id for _, r in bulk.records]
    assert sorted(ids) == [b"p0", b"p1", b"q0"], ids
    assert log.failed_publishes == 1 and log.found_logged == 2 and len(bulk.lookups) == 1


async def test_a_lookup_that_keeps_timing_out_does_not_hold_the_log_forever() -> None:
    bulk = FakeBulk()
    bulk.lost_acks = 1
    bulk.slow_lookups = 10**6
    log = log_for(LOAN, bulk)
    log.start()
    log.offer(entry(LOAN, rows=2))
    await drained(log)
    await log.close()
    # Three lookups timed out, then the entry went unchecked: there twice, and counted.
    assert len(bulk.lookups) == 3 and log.unverified == 2
    assert sorted(r.event_id for _, r in bulk.records) == [b"p0", b"p0", b"p1", b"p1"]


async def test_shadow_events_have_their_own_event_id() -> None:
    bulk = FakeBulk()
    log = log_for(LOAN, bulk)
    log.start()
    log.offer(entry(LOAN, rows=1, shadow=True))
    await log.close()
    record = bulk.records[0][1]
    assert dict(record.headers)["aif-event-id"] == b"p0:shadow"
    assert events_pb2.PredictionLogged.FromString(record.value).shadow


async def test_close_gives_up_after_its_timeout_and_counts_the_rest() -> None:
    bulk = FakeBulk()
    bulk.failures = 10_000
    log = log_for(LOAN, bulk)
    log.start()
    log.offer(entry(LOAN, rows=2))
    await log.close(timeout_s=0.2)
    assert log.dropped == 2 and log.logged == 0
