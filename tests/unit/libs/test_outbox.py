"""libs.bus.outbox: the relay publishes what the store's outbox holds, once, and keeps what fails."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from google.protobuf.wrappers_pb2 import StringValue

from libs.bus.outbox import OutboxRelay
from libs.bus.producer import Outgoing


class _Table:
    def __init__(self, n: int) -> None:
        self.rows = {
            i: Outgoing("t", StringValue(value=str(i)), "uc", key="uc", event_id=f"e{i}") for i in range(n)
        }
        self.sent: list[int] = []

    def pending(self, limit: int) -> Sequence[tuple[int, Outgoing]]:
        return [(k, v) for k, v in sorted(self.rows.items()) if k not in self.sent][:limit]

    def mark_sent(self, keys: Sequence[int]) -> None:
        self.sent.extend(keys)


class _Publisher:
    def __init__(self, failures: int = 0) -> None:
        self.published: list[str] = []
        self.failures = failures

    async def publish_many(self, items: Sequence[Outgoing]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker down")
        self.published.extend(i.event_id for i in items)


async def test_flush_publishes_every_pending_row_in_order_in_batches() -> None:
    table, publisher = _Table(7), _Publisher()
    seen: list[int] = []
    relay = OutboxRelay(
        table,
        publisher,
        name="test",
        batch=3,  # type: ignore[arg-type]
        on_published=lambda events: seen.append(len(events)),
    )
    assert await relay.flush() == 7
    assert publisher.published == [f"e{i}" for i in range(7)]
    assert seen == [3, 3, 1] and relay.published == 7
    assert await relay.flush() == 0


async def test_run_retries_a_failed_publish_and_stop_ends_it_after_a_last_flush() -> None:
    table, publisher = _Table(2), _Publisher(failures=2)
    relay = OutboxRelay(table, publisher, name="test", poll_s=0.05)  # type: ignore[arg-type]
    task = asyncio.create_task(relay.run())
    for _ in range(100):
        if publisher.published:
            break
        await asyncio.sleep(0.05)
    assert publisher.published == ["e0", "e1"]  # nothing lost while the broker was down
    table.rows[9] = Outgoing("t", StringValue(value="9"), "uc", key="uc", event_id="e9")
    await relay.stop()
    await asyncio.wait_for(task, 5)
    assert publisher.published == ["e0", "e1", "e9"]  # the last flush took the late row, once
