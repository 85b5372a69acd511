"""Publishes the ``AliasChanged`` events that state changes queued in the outbox table.

A change and its event rows commit in one transaction; this relay publishes pending
rows (event id = the audit entry's id, key = the use case, so one use case's changes
stay in order) and then marks them published. A crash between the two publishes
them again with the same event id, which consumers deduplicate: nothing is lost and
no effect is doubled.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from libs.bus import EventPublisher, Outgoing
from services.registry.blocking import offload
from services.registry.convert import alias_changed_pb
from services.registry.store import RegistryStore

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, store: RegistryStore, publisher: EventPublisher, topic: str, *,
                 clock: Callable[[], datetime], poll_s: float = 2.0, batch: int = 100,
                 on_published: Callable[[int], None] | None = None) -> None:
        self._store = store
        self._publisher = publisher
        self._topic = topic
        self._clock = clock
        self._poll = poll_s
        self._batch = batch
        self._on_published = on_published or (lambda n: None)
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Publish soon; safe to call from any thread."""
        self._loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="registry-outbox")

    async def flush(self) -> int:
        """Publish every pending event; returns how many were published."""
        total = 0
        while True:
            items = await offload(self._store.pending_outbox, self._batch)
            if not items:
                return total
            await self._publisher.publish_many([
                Outgoing(self._topic, alias_changed_pb(i.change), use_case=i.change.use_case,
                         key=i.change.use_case, event_id=i.event_id) for i in items])
            await offload(self._store.mark_published, [i.id for i in items], self._clock())
            total += len(items)
            self._on_published(len(items))

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            try:
                await self.flush()
                backoff = 0.5
            except Exception:  # noqa: BLE001 - broker or database down: keep the rows, retry
                log.exception("publishing AliasChanged events failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
            except TimeoutError:
                pass
            self._wake.clear()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - what is left is published at the next start
            log.warning("outbox not fully published at shutdown; it will be at the next start")
