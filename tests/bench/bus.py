"""bus.events_per_s: publish + consume through libs.bus vs raw aiokafka on the same broker."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from google.protobuf.message import Message

from aifactory.trainer.v1 import events_pb2
from libs.bus import DeadLetters, Event, EventConsumer, EventPublisher, Outgoing
from tests.bench.report import Figure

N = 20_000
BATCH = 500


def _event(i: int) -> events_pb2.TrainingRequested:
    return events_pb2.TrainingRequested(request_id=f"r{i:08d}", use_case="bench")


async def _topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        await admin.close()


async def _raw(bootstrap: str, topic: str) -> float:
    """Same acks/idempotence as the bus, no headers, no decoding: the floor."""
    payloads = [_event(i).SerializeToString() for i in range(N)]
    started = time.perf_counter()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    for i in range(0, N, BATCH):
        await asyncio.gather(*[await producer.send(topic, p) for p in payloads[i : i + BATCH]])
    await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="raw-" + topic,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen = 0
    while seen < N:
        for tp, records in (await consumer.getmany(timeout_ms=200, max_records=BATCH)).items():
            for r in records:
                events_pb2.TrainingRequested.FromString(r.value)
            seen += len(records)
            await consumer.commit({tp: records[-1].offset + 1})
    await consumer.stop()
    return N / (time.perf_counter() - started)


async def _bus(bootstrap: str, topic: str, dlq: str) -> float:
    events = [_event(i) for i in range(N)]
    started = time.perf_counter()
    async with EventPublisher(bootstrap, producer="bench") as publisher:
        for i in range(0, N, BATCH):
            await publisher.publish_many([Outgoing(topic, e, "bench") for e in events[i : i + BATCH]])
        seen = 0

        async def handle(event: Event[Message]) -> None:
            nonlocal seen
            seen += 1

        consumer = EventConsumer(
            bootstrap,
            "bus-" + topic,
            {topic: [events_pb2.TrainingRequested]},
            handle,
            DeadLetters(publisher, dlq),
            max_batch=BATCH,
        )
        task = asyncio.create_task(consumer.run())
        while seen < N:
            await asyncio.sleep(0.01)
        await consumer.stop()
        await task
    return N / (time.perf_counter() - started)


async def measure(bootstrap: str) -> list[Figure]:
    run = uuid.uuid4().hex[:8]
    raw_topic, bus_topic, dlq = f"bench.raw.{run}", f"bench.bus.{run}", f"bench.dlq.{run}"
    await _topics(bootstrap, raw_topic, bus_topic, dlq)
    raw = await _raw(bootstrap, raw_topic)
    bus = await _bus(bootstrap, bus_topic, dlq)
    return [Figure("bus.events_per_s", bus, "events/s", "aiokafka.raw_events_per_s", raw)]
