"""Reading a topic back up to where it ends now: a service's own state or log, at start.

The caller assigns the partitions and positions the consumer (from the beginning, from a
time); :func:`records_to_end` then yields every record from there up to each partition's
end offset as it was when called, so a topic still being written does not keep it going.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


async def records_to_end(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition], poll_ms: int = 500
) -> AsyncIterator[ConsumerRecord]:  # type: ignore[type-arg]
    """The records of ``partitions`` from the consumer's positions to their current ends."""
    ends = await consumer.end_offsets(list(partitions))
    todo = [tp for tp in ends if await consumer.position(tp) < ends[tp]]
    while todo:
        for records in (await consumer.getmany(*todo, timeout_ms=poll_ms)).values():
            for record in records:
                yield record
        todo = [tp for tp in todo if await consumer.position(tp) < ends[tp]]
