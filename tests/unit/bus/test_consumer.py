"""EventConsumer's bounded retries, against a fake Kafka consumer: it keeps polling (every
partition paused) while it waits, gives up after the policy, and loses nothing on a stop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from google.protobuf.message import Message

from aifactory.trainer.v1 import events_pb2 as trainer_events
from libs.bus import DeadLetters, Event, EventConsumer
from libs.bus import headers as h
from libs.bus.headers import EventMeta
from libs.bus.types import event_type_of
from libs.errors import Unavailable
from libs.retry import RetryPolicy

TOPIC = "aif.test"
TP = TopicPartition(TOPIC, 0)
OTHER = TopicPartition(TOPIC, 1)
POLICY = RetryPolicy(attempts=3, initial_s=0.05, max_s=0.05, jitter_s=0.0, deadline_s=10.0)


class FakeKafka:
    """The part of AIOKafkaConsumer the consumer's retry path uses, recording what it saw."""

    def __init__(self) -> None:
        self.assigned = {TP, OTHER}
        self.paused_now: set[TopicPartition] = set()
        self.polls_while_paused: list[frozenset[TopicPartition]] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_now |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_now -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_now)

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0, **_: Any) -> dict[Any, Any]:
        self.polls_while_paused.append(frozenset(self.paused_now))
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def stop(self) -> None:
        pass


class Sent:
    def __init__(self) -> None:
        self.letters: list[tuple[bytes, dict[str, bytes]]] = []

    async def send_raw(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        self.letters.append((value, dict(headers)))


def record(offset: int) -> ConsumerRecord:  # type: ignore[type-arg]
    meta = EventMeta.new(event_type_of(trainer_events.TrainingRequested), "v1", "loan", "test")
    value = trainer_events.TrainingRequested(use_case="loan").SerializeToString()
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, None, value, None, 0, len(value), meta.to_headers())


async def consumer_with(handler: Any, policy: RetryPolicy = POLICY) -> tuple[EventConsumer, FakeKafka, Sent]:
    sent = Sent()
    consumer = EventConsumer(
        "127.0.0.1:1",
        "g-test",
        {TOPIC: [trainer_events.TrainingRequested]},
        handler,
        DeadLetters(sent, "dlq"),
        retry=policy,
    )
    fake = FakeKafka()
    consumer._consumer = fake  # type: ignore[assignment]
    return consumer, fake, sent


async def test_it_polls_with_every_partition_paused_while_it_waits_then_resumes() -> None:
    calls = 0

    async def handle(event: Event[Message]) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Unavailable("registry is down")

    consumer, fake, sent = await consumer_with(handle)
    await consumer._handle_partition(TP, [record(7), record(8)])
    assert calls == 4  # record 7: two failures and a success; record 8: once
    # getmany is what keeps the member in the group (max.poll.interval.ms): called during
    # both waits, with all assigned partitions paused so nothing new is handed out.
    assert fake.polls_while_paused and set(fake.polls_while_paused) == {frozenset({TP, OTHER})}
    assert fake.paused_now == set()  # resumed afterwards
    assert fake.commits[0] == {TP: 7}  # what was done before the record, before waiting
    assert fake.commits[-1] == {TP: 9}
    assert sent.letters == []


async def test_it_gives_up_after_the_policy_and_dead_letters_with_the_reason() -> None:
    calls: list[int] = []

    async def handle(event: Event[Message]) -> None:
        calls.append(event.offset)
        if event.offset == 7:
            raise Unavailable("registry is down")

    consumer, fake, sent = await consumer_with(handle)
    await consumer._handle_partition(TP, [record(7), record(8)])
    assert calls == [7, 7, 7, 8]
    [(value, headers)] = sent.letters
    assert headers[h.DLQ_ERROR] == b"retries-exhausted"
    assert headers[h.DLQ_REASON].startswith(b"dependency unavailable after 3 attempts in ")
    assert headers[h.DLQ_REASON].endswith(b"s: registry is down")
    assert headers[h.DLQ_SOURCE] == f"{TOPIC}/0/7".encode()
    assert value == record(7).value
    assert fake.commits[-1] == {TP: 9}


async def test_other_errors_are_not_retried() -> None:
    calls = 0

    async def handle(event: Event[Message]) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad input")

    consumer, fake, sent = await consumer_with(handle)
    await consumer._handle_partition(TP, [record(7)])
    assert calls == 1 and fake.polls_while_paused == []
    assert [headers[h.DLQ_ERROR] for _, headers in sent.letters] == [b"ValueError"]


async def test_a_stop_while_waiting_seeks_back_and_commits_nothing_past_the_record() -> None:
    async def handle(event: Event[Message]) -> None:
        raise Unavailable("registry is down")

    slow = RetryPolicy(attempts=100, initial_s=30.0, max_s=30.0, jitter_s=0.0, deadline_s=600.0)
    consumer, fake, sent = await consumer_with(handle, slow)
    task = asyncio.create_task(consumer._handle_partition(TP, [record(7)]))
    while not fake.polls_while_paused:
        await asyncio.sleep(0.01)
    await consumer.stop()
    async with asyncio.timeout(2):  # seen at the next poll, not after the 30 s wait
        await task
    assert fake.seeks == [(TP, 7)]
    assert fake.commits == [{TP: 7}]
    assert sent.letters == [] and fake.paused_now == set()


async def test_a_partition_taken_away_while_waiting_is_left_to_its_new_owner() -> None:
    async def handle(event: Event[Message]) -> None:
        raise Unavailable("registry is down")

    slow = RetryPolicy(attempts=100, initial_s=30.0, max_s=30.0, jitter_s=0.0, deadline_s=600.0)
    consumer, fake, sent = await consumer_with(handle, slow)
    task = asyncio.create_task(consumer._handle_partition(TP, [record(7)]))
    while not fake.polls_while_paused:
        await asyncio.sleep(0.01)
    fake.assigned = {OTHER}  # a rebalance moved TP away
    async with asyncio.timeout(2):
        await task
    assert fake.commits == [{TP: 7}] and fake.seeks == [] and sent.letters == []
