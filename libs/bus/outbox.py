"""The transactional outbox's relay: events committed with a state change, published after.

A service that changes state and must announce it writes the change and the event row
in one database transaction (its store's outbox table); :class:`OutboxRelay` then
publishes pending rows and marks them sent. A crash between the two publishes them
again with the same event id, which consumers deduplicate: nothing is lost, no effect
is doubled. The store side is the small :class:`OutboxSource` protocol, so the registry
and the monitor share this loop and differ only in what their rows hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from libs.bus.producer import EventPublisher, Outgoing
from libs.retry import RetryPolicy

log = logging.getLogger(__name__)

K = TypeVar("K")

# A failed round (broker or database down) is tried again after 0.5 s, doubling to 10 s,
# jittered. No attempt bound: the rows wait in the table (durable, nothing held in
# memory), and a relay that gave up would leave them unpublished until a restart.
RELAY_RETRY = RetryPolicy(attempts=None, initial_s=0.5, max_s=10.0, jitter_s=0.5, retry_on=(Exception,))


class OutboxSource(Protocol[K]):
    """A store's outbox table. Both methods block (they run in a worker thread)."""

    def pending(self, limit: int) -> Sequence[tuple[K, Outgoing]]:
        """Up to ``limit`` unpublished events, oldest first, each with its row's key."""
        ...

    def mark_sent(self, keys: Sequence[K]) -> None: ...


class OutboxRelay(Generic[K]):
    """Publishes what an :class:`OutboxSource` holds: soon after :meth:`kick`, else every
    ``poll_s``; a failed round (broker or database down) keeps the rows and retries with
    backoff. Run :meth:`run` as a background task; :meth:`stop` ends it after one last
    flush."""

    def __init__(
        self,
        source: OutboxSource[K],
        publisher: EventPublisher,
        *,
        name: str,
        poll_s: float = 2.0,
        batch: int = 100,
        before_flush: Callable[[], Awaitable[None]] | None = None,
        on_published: Callable[[Sequence[Outgoing]], None] | None = None,
    ) -> None:
        self._source = source
        self._publisher = publisher
        self.name = name
        self._poll = poll_s
        self._batch = batch
        self._before = before_flush
        self._on_published = on_published
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        self.published = 0

    def kick(self) -> None:
        """Publish soon; safe to call from any thread."""
        self._loop.call_soon_threadsafe(self._wake.set)

    async def flush(self) -> int:
        """Publish every pending event now; returns how many were published."""
        if self._before is not None:
            await self._before()
        total = 0
        while True:
            rows = await asyncio.to_thread(self._source.pending, self._batch)
            if not rows:
                return total
            events = [event for _, event in rows]
            await self._publisher.publish_many(events)
            await asyncio.to_thread(self._source.mark_sent, [key for key, _ in rows])
            total += len(rows)
            self.published += len(rows)
            if self._on_published is not None:
                self._on_published(events)

    async def run(self) -> None:
        """Publish until :meth:`stop`, then once more: what cannot be published then stays
        in the table for the next start."""
        backoff = RELAY_RETRY.backoff(f"{self.name}: publishing the outbox")
        while not self._stopping:
            try:
                await self.flush()
                backoff.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker or database down: keep the rows, retry
                pause = backoff.failed(exc)
                log.warning("%s: publishing the outbox failed (%s); retrying in %.1fs", self.name, exc, pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=pause)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - published at the next start
            log.warning("%s: outbox not fully published at shutdown; it will be at the next start", self.name)

    async def stop(self) -> None:
        """Ask :meth:`run` to end after one last flush (await its task after this)."""
        self._stopping = True
        self._wake.set()


__all__ = ["OutboxRelay", "OutboxSource"]
