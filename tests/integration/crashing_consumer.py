"""Helper process for test_bus: applies an event's effect, then dies before committing."""

from __future__ import annotations

import asyncio
import os
import sys

from aifactory.trainer.v1 import events_pb2
from libs.bus import DeadLetters, Event, EventConsumer, EventPublisher


async def main(bootstrap: str, topic: str, dlq: str, group: str, seen_path: str) -> None:
    publisher = EventPublisher(bootstrap, producer="crasher")
    await publisher.start()

    async def handle(event: Event) -> None:  # type: ignore[type-arg]
        with open(seen_path, "a") as fh:
            fh.write(event.meta.event_id + "\n")
        os._exit(17)  # killed after the effect, before the batch's commit

    consumer = EventConsumer(
        bootstrap, group, {topic: [events_pb2.TrainingRequested]}, handle, DeadLetters(publisher, dlq)
    )
    await consumer.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
