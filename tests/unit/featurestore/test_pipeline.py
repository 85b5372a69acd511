"""The stream's two-stage batch pipeline: acks only after durable effects, in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from services.featurestore.batch import BatchOutcome
from services.featurestore.consumers import BatchPipeline


@dataclass
class Message:
    refcount: int = 1
    acked: bool = False

    def incref(self) -> None:
        self.refcount += 1


@dataclass
class Event:
    """faust's event/message acking: refcounted, acked when the count reaches zero."""

    message: Message = field(default_factory=Message)

    def ack(self) -> None:
        self.message.refcount -= 1
        self.message.acked = self.message.refcount == 0


def take(events: list[Event]) -> None:
    """What faust's take_events does once the agent's loop moves on: ack the batch."""
    for e in events:
        e.ack()


async def test_events_are_acked_only_when_their_batch_is_finished_in_order() -> None:
    finished: list[int] = []
    gates = {1: asyncio.Event(), 2: asyncio.Event()}
    pipeline = BatchPipeline(on_fatal=lambda exc: pytest.fail(f"fatal: {exc!r}"))

    def compute(events: list[Event]) -> BatchOutcome:
        return BatchOutcome()

    async def finish(out: BatchOutcome) -> None:
        n = len(finished) + 1
        await gates[n].wait()
        finished.append(n)

    first, second = [Event(), Event()], [Event()]
    await pipeline.submit(first, compute, finish)
    take(first)
    assert not any(e.message.acked for e in first)  # held: the writes are still in flight
    submitting = asyncio.create_task(pipeline.submit(second, compute, finish))
    await asyncio.sleep(0.01)
    assert not submitting.done()  # at most one batch waits behind the one finishing
    gates[2].set()  # the second batch may not finish before the first
    await asyncio.sleep(0.01)
    assert finished == []
    gates[1].set()
    await submitting
    take(second)
    await pipeline.drain()
    assert finished == [1, 2]
    assert all(e.message.acked for e in first + second)


async def test_a_failed_finish_is_fatal_and_its_events_never_acked() -> None:
    fatal: list[BaseException] = []
    pipeline = BatchPipeline(on_fatal=fatal.append)

    async def finish(out: BatchOutcome) -> None:
        raise OSError("disk full")

    events = [Event()]
    await pipeline.submit(events, lambda e: BatchOutcome(), finish)
    take(events)
    await pipeline.drain()
    assert [type(e) for e in fatal] == [OSError]
    assert not events[0].message.acked


async def test_batches_taken_while_stopping_are_held_for_the_restart() -> None:
    pipeline = BatchPipeline(on_fatal=lambda exc: pytest.fail(f"fatal: {exc!r}"))
    await pipeline.drain()
    computed: list[int] = []
    events = [Event()]
    await pipeline.submit(
        events, lambda e: computed.append(1) or BatchOutcome(), lambda out: asyncio.sleep(0)
    )
    take(events)
    assert computed == [] and not events[0].message.acked
