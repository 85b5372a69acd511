"""libs.runtime.Service.spawn: background work owned by the service, stopped at close."""

from __future__ import annotations

import asyncio
import logging

import pytest

from libs.runtime import Service


async def test_close_cancels_a_task_without_stop_and_awaits_a_graceful_one() -> None:
    service = Service(server=None)  # type: ignore[arg-type]
    events: list[str] = []
    stopping = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            events.append("forever cancelled")

    async def graceful() -> None:
        await stopping.wait()
        events.append("graceful finished")

    async def stop() -> None:
        stopping.set()

    service.spawn("forever", forever())
    task = service.spawn("graceful", graceful(), stop=stop)
    await asyncio.sleep(0)
    await service.close()
    # Closed in reverse order: the graceful one first, and it ended by itself.
    assert events == ["graceful finished", "forever cancelled"]
    assert task.done() and not task.cancelled()


async def test_a_task_that_dies_is_logged_at_once(caplog: pytest.LogCaptureFixture) -> None:
    service = Service(server=None)  # type: ignore[arg-type]

    async def dies() -> None:
        raise RuntimeError("consumer lost")

    with caplog.at_level(logging.ERROR, logger="libs.runtime"):
        task = service.spawn("consumer", dies())
        await asyncio.wait([task])
        await asyncio.sleep(0)
    assert "background task consumer ended with an error" in caplog.text
    await service.close()  # logged already; closing the rest goes on
