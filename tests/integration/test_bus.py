"""The event bus on the real broker: headers, commit-after-effect, dead letters, retries."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from google.protobuf.message import Message
from opentelemetry import trace

from aifactory.common.v1 import common_pb2
from aifactory.trainer.v1 import events_pb2 as trainer_events
from libs.bus import DeadLetters, Event, EventConsumer, EventPublisher
from libs.bus import headers as h
from libs.errors import Unavailable
from libs.retry import RetryPolicy
from libs.telemetry import setup_telemetry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TRACEPARENT = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
# The consumer's retry policy, scaled down: 4 tries, waits of 50-100 ms.
FAST = RetryPolicy(attempts=4, initial_s=0.05, max_s=0.1, jitter_s=0.02, deadline_s=5.0)


def training_request(use_case: str = "loan") -> trainer_events.TrainingRequested:
    return trainer_events.TrainingRequested(
        request_id=uuid.uuid4().hex,
        use_case=use_case,
        reason=trainer_events.TRAINING_REASON_MANUAL,
        seed=7,
        requested_by=common_pb2.Actor(subject="alice", roles=["ml-engineer"]),
    )


async def consume_until(consumer: EventConsumer, done: Callable[[], bool], timeout: float = 30) -> None:
    """Run ``consumer`` until ``done()`` holds, then stop it (which commits)."""
    task = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(timeout):
            while not done():
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
        await task


async def read_all(bootstrap: str, topic: str, n: int, timeout: float = 20) -> list:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < n:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


@pytest.fixture
async def publisher(kafka) -> EventPublisher:  # type: ignore[no-untyped-def]
    async with EventPublisher(kafka.bootstrap_servers, producer="test-producer") as pub:
        yield pub


def make_consumer(
    kafka,
    publisher: EventPublisher,
    topic: str,
    dlq: str,
    group: str,  # type: ignore[no-untyped-def]
    handler: Callable[[Event[Message]], Awaitable[None]],
) -> EventConsumer:
    return EventConsumer(
        kafka.bootstrap_servers,
        group,
        {topic: [trainer_events.TrainingRequested]},
        handler,
        DeadLetters(publisher, dlq),
        retry=FAST,
    )


async def test_published_event_is_consumed_with_all_headers(kafka, publisher, new_topic) -> None:  # type: ignore[no-untyped-def]
    setup_telemetry("test")
    topic, dlq = await new_topic(), await new_topic("dlq")
    sent = training_request()
    with trace.get_tracer("test").start_as_current_span("caller") as span:
        meta = await publisher.publish(topic, sent, use_case="loan", key="loan")
        trace_id = span.get_span_context().trace_id

    got: list[Event[Message]] = []

    async def handle(event: Event[Message]) -> None:
        got.append(event)

    await consume_until(
        make_consumer(kafka, publisher, topic, dlq, "g-" + topic, handle), lambda: len(got) == 1
    )
    event = got[0]
    assert event.payload == sent
    assert event.key == b"loan"
    assert event.meta.event_id == meta.event_id and len(meta.event_id) == 32
    assert event.meta.event_type == "aifactory.trainer.v1.TrainingRequested"
    assert event.meta.schema_version == "v1"
    assert (event.meta.use_case, event.meta.producer) == ("loan", "test-producer")
    assert event.meta.produced_at_ms > 0
    assert event.meta.traceparent is not None
    assert f"{trace_id:032x}" in event.meta.traceparent
    assert re.match(TRACEPARENT, event.meta.traceparent)


async def test_consumer_killed_before_commit_sees_event_again(
    kafka, publisher, new_topic, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    topic, dlq = await new_topic(), await new_topic("dlq")
    group = "g-" + topic
    meta = await publisher.publish(topic, training_request(), use_case="loan")
    seen = tmp_path / "seen.txt"
    # A separate process applies the effect, then dies (os._exit) before it can commit.
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("crashing_consumer.py")),
            kafka.bootstrap_servers,
            topic,
            dlq,
            group,
            str(seen),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 17, proc.stderr
    assert seen.read_text().split() == [meta.event_id]

    again: list[str] = []

    async def handle(event: Event[Message]) -> None:
        again.append(event.meta.event_id)

    await consume_until(make_consumer(kafka, publisher, topic, dlq, group, handle), lambda: len(again) == 1)
    assert again == [meta.event_id]

    # ... and once that consumer has committed, the group does not see it a third time.
    late: list[str] = []

    async def handle_late(event: Event[Message]) -> None:
        late.append(event.meta.event_id)

    marker = await publisher.publish(topic, training_request(), use_case="loan")
    await consume_until(
        make_consumer(kafka, publisher, topic, dlq, group, handle_late), lambda: len(late) >= 1
    )
    assert late == [marker.event_id]


async def test_bad_events_are_dead_lettered_with_reason_and_consumer_goes_on(
    kafka, publisher, new_topic
) -> None:  # type: ignore[no-untyped-def]
    topic, dlq = await new_topic(), await new_topic("dlq")
    await publisher.send_raw(topic, b"\x00garbage", headers=[])  # no headers at all
    wrong_type = common_pb2.ModelRef(use_case="loan", model_name="m", version=1)
    await publisher.publish(topic, wrong_type, use_case="loan")
    await publisher.send_raw(
        topic,
        b"\xff\xff\xff",
        headers=[(h.EVENT_ID, b"x1"), (h.EVENT_TYPE, b"aifactory.trainer.v1.TrainingRequested")],
    )
    boom = training_request("explodes")
    await publisher.publish(topic, boom, use_case="explodes")
    good = await publisher.publish(topic, training_request(), use_case="loan")

    handled: list[str] = []

    async def handle(event: Event[Message]) -> None:
        if event.meta.use_case == "explodes":
            raise ValueError("cannot handle use case 'explodes'")
        handled.append(event.meta.event_id)

    await consume_until(
        make_consumer(kafka, publisher, topic, dlq, "g-" + topic, handle), lambda: len(handled) == 1
    )
    assert handled == [good.event_id]

    dead = await read_all(kafka.bootstrap_servers, dlq, 4)
    reasons = [dict(r.headers)[h.DLQ_REASON].decode() for r in dead]
    assert reasons[0] == "missing header aif-event-id"
    assert "not accepted on" in reasons[1] and "aifactory.common.v1.ModelRef" in reasons[1]
    assert reasons[2].startswith("payload is not a valid aifactory.trainer.v1.TrainingRequested")
    assert reasons[3] == "cannot handle use case 'explodes'"
    assert dict(dead[3].headers)[h.DLQ_ERROR] == b"ValueError"
    assert dead[0].value == b"\x00garbage"  # the original bytes, for replay
    assert [dict(r.headers)[h.DLQ_SOURCE].decode() for r in dead] == [f"{topic}/0/{i}" for i in range(4)]


async def test_unavailable_dependency_is_retried_not_dead_lettered(kafka, publisher, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic, dlq = await new_topic(), await new_topic("dlq")
    meta = await publisher.publish(topic, training_request(), use_case="loan")
    attempts: list[str] = []
    done: list[str] = []

    async def handle(event: Event[Message]) -> None:
        attempts.append(event.meta.event_id)
        if len(attempts) < 3:
            raise Unavailable("registry is down")
        done.append(event.meta.event_id)

    await consume_until(
        make_consumer(kafka, publisher, topic, dlq, "g-" + topic, handle), lambda: len(done) == 1
    )
    assert attempts == [meta.event_id] * 3 and done == [meta.event_id]
    with pytest.raises(TimeoutError):
        await read_all(kafka.bootstrap_servers, dlq, 1, timeout=2)


async def test_a_dependency_down_for_good_dead_letters_the_event_after_the_bound(
    kafka, publisher, new_topic
) -> None:  # type: ignore[no-untyped-def]
    """One event whose handler raises Unavailable forever holds its partition only for the
    retry policy's bound: then it is dead-lettered with why, and the events behind it are
    handled (before the fix it was retried every 0.5 s forever, blocking them)."""
    topic, dlq = await new_topic(), await new_topic("dlq")
    stuck = await publisher.publish(topic, training_request("stuck"), use_case="stuck")
    behind = [await publisher.publish(topic, training_request(), use_case="loan") for _ in range(3)]
    tries: list[str] = []
    handled: list[str] = []

    async def handle(event: Event[Message]) -> None:
        if event.meta.use_case == "stuck":
            tries.append(event.meta.event_id)
            raise Unavailable("registry is down")
        handled.append(event.meta.event_id)

    await consume_until(
        make_consumer(kafka, publisher, topic, dlq, "g-" + topic, handle), lambda: len(handled) == 3
    )
    assert tries == [stuck.event_id] * FAST.attempts  # type: ignore[operator]
    assert handled == [m.event_id for m in behind]
    [letter] = await read_all(kafka.bootstrap_servers, dlq, 1)
    headers = dict(letter.headers)
    assert headers[h.DLQ_ERROR] == b"retries-exhausted"
    reason = headers[h.DLQ_REASON].decode()
    assert reason.startswith(f"dependency unavailable after {FAST.attempts} attempts in "), reason
    assert reason.endswith("s: registry is down"), reason
    assert headers[h.EVENT_ID] == stuck.event_id.encode()
    assert headers[h.DLQ_SOURCE] == f"{topic}/0/0".encode()
    assert trainer_events.TrainingRequested.FromString(letter.value).use_case == "stuck"

    # Everything was committed: the group does not see any of them again.
    late: list[str] = []

    async def handle_late(event: Event[Message]) -> None:
        late.append(event.meta.event_id)

    marker = await publisher.publish(topic, training_request(), use_case="loan")
    await consume_until(
        make_consumer(kafka, publisher, topic, dlq, "g-" + topic, handle_late), lambda: len(late) >= 1
    )
    assert late == [marker.event_id]


async def test_a_stop_mid_retry_loses_nothing(kafka, publisher, new_topic) -> None:  # type: ignore[no-untyped-def]
    """Stopped while it waits to retry an event, the consumer commits nothing past it: the
    next member of the group handles it (and nothing is dead-lettered)."""
    topic, dlq = await new_topic(), await new_topic("dlq")
    first = await publisher.publish(topic, training_request(), use_case="loan")
    stuck = await publisher.publish(topic, training_request("stuck"), use_case="stuck")
    seen: list[str] = []

    async def handle(event: Event[Message]) -> None:
        seen.append(event.meta.event_id)
        if event.meta.use_case == "stuck":
            raise Unavailable("registry is down")

    slow = RetryPolicy(attempts=100, initial_s=5.0, max_s=5.0, jitter_s=0.0, deadline_s=600.0)
    consumer = EventConsumer(
        kafka.bootstrap_servers,
        "g-" + topic,
        {topic: [trainer_events.TrainingRequested]},
        handle,
        DeadLetters(publisher, dlq),
        retry=slow,
    )
    await consume_until(consumer, lambda: seen == [first.event_id, stuck.event_id])

    again: list[str] = []

    async def handle_again(event: Event[Message]) -> None:
        again.append(event.meta.event_id)

    await consume_until(
        make_consumer(kafka, publisher, topic, dlq, "g-" + topic, handle_again), lambda: len(again) >= 1
    )
    assert again == [stuck.event_id]  # the first event was committed before the wait
    with pytest.raises(TimeoutError):
        await read_all(kafka.bootstrap_servers, dlq, 1, timeout=2)


async def test_batch_messages_are_handled_event_by_event(kafka, publisher, new_topic) -> None:  # type: ignore[no-untyped-def]
    """ingestion's RecordAcceptedBatch read by a consumer that accepts RecordAccepted: each record on its
    own, and the one its handler fails on dead-lettered alone."""
    from aifactory.ingestion.v1 import events_pb2 as ingestion_events
    from services.ingestion.publisher import accepted_message, batched
    from tests.unit.featurestore.helpers import record_accepted

    topic, dlq = await new_topic(), await new_topic("dlq")
    records = [
        record_accepted("loan", f"e{i}", f"r{i}", datetime(2026, 3, 1, tzinfo=UTC), {"loan": float(i)})
        for i in range(5)
    ]
    [batch] = batched([accepted_message(topic, r) for r in records], 10)
    batch_id = dict(batch.headers)[h.EVENT_ID].decode()
    await publisher.send_raw(topic, batch.value, key=None, headers=batch.headers)
    await publisher.send_raw(topic, b"\xff\x00not a batch", key=None, headers=batch.headers)
    got: list[Event[Message]] = []

    async def handle(event: Event[Message]) -> None:
        if event.payload.record.record_id == "r3":  # type: ignore[attr-defined]
            raise ValueError("r3 is refused")
        got.append(event)

    consumer = EventConsumer(
        kafka.bootstrap_servers,
        "g-" + topic,
        {topic: [ingestion_events.RecordAccepted]},
        handle,
        DeadLetters(publisher, dlq),
        retry=FAST,
    )
    await consume_until(consumer, lambda: len(got) == 4)
    assert [e.payload.record.record_id for e in got] == ["r0", "r1", "r2", "r4"]  # type: ignore[attr-defined]
    assert [e.meta.event_id for e in got] == [f"{batch_id}#{i}" for i in (0, 1, 2, 4)]
    assert {e.meta.event_type for e in got} == {"aifactory.ingestion.v1.RecordAccepted"}
    letters = await read_all(kafka.bootstrap_servers, dlq, 2)
    by_reason = {dict(r.headers)[h.DLQ_ERROR]: r for r in letters}
    refused = by_reason[b"ValueError"]
    assert ingestion_events.RecordAccepted.FromString(refused.value) == records[3]
    assert dict(refused.headers)[h.EVENT_ID] == f"{batch_id}#3".encode()
    assert dict(refused.headers)[h.EVENT_TYPE] == b"aifactory.ingestion.v1.RecordAccepted"
    assert (
        b"not a valid aifactory.ingestion.v1.RecordAcceptedBatch"
        in dict(by_reason[b"undecodable"].headers)[h.DLQ_REASON]
    )
