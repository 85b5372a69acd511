"""libs.runtime.Service: background work owned by the service, stopped at close, and a
dead worker never healthy: health NOT_SERVING at once and a non-zero exit from ``run``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from typing import ClassVar

import pytest
from grpc_health.v1 import health_pb2

from libs.rpc import RpcServer
from libs.rpc.healthcheck import check
from libs.runtime import WORKER_FAILED, Service, run
from libs.settings import ServiceSettings
from libs.telemetry import Telemetry, setup_telemetry

HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    server = RpcServer("127.0.0.1:0", setup_telemetry("test"), drain_seconds=0.1)
    await server.start()
    built = Service(server)
    yield built
    await built.close()
    await server.stop()


async def _health(service: Service, name: str = "") -> bool:
    return await asyncio.to_thread(check, f"127.0.0.1:{service.server.port}", name)


async def _failed(service: Service) -> None:
    await asyncio.wait_for(service.failed.wait(), 5)
    await asyncio.sleep(0.05)  # the health update is a task of its own


async def test_close_cancels_a_task_without_stop_and_awaits_a_graceful_one(service: Service) -> None:
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
    # Ending because the service closes is no failure.
    assert service.failure is None and not service.failed.is_set()


async def test_a_task_that_dies_turns_every_health_status_not_serving(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    assert await _health(service) and await _health(service, HEALTH)

    async def dies() -> None:
        raise RuntimeError("dead-letter publish failed")

    with caplog.at_level(logging.ERROR, logger="libs.runtime"):
        service.spawn("consumer", dies())
        await _failed(service)
    assert service.failure is not None and "consumer" in service.failure
    assert "background task consumer ended with an error" in caplog.text
    assert "dead-letter publish failed" in caplog.text
    assert not await _health(service)
    assert not await _health(service, HEALTH)


async def test_a_task_that_returns_while_serving_fails_the_service(service: Service) -> None:
    async def gives_up() -> None:
        return

    service.spawn("relay", gives_up())
    await _failed(service)
    assert service.failure is not None and "relay returned" in service.failure
    assert not await _health(service)


async def test_a_watched_task_cancelled_from_elsewhere_fails_the_service(service: Service) -> None:
    task = asyncio.get_running_loop().create_task(asyncio.Event().wait(), name="worker")
    service.watch(task)
    task.cancel()
    await _failed(service)
    assert service.failure is not None and "worker was cancelled" in service.failure


async def test_work_that_finishes_by_design_may_return_but_not_fail(service: Service) -> None:
    async def bootstrap() -> None:
        return

    done = service.spawn("bootstrap", bootstrap(), finishes=True)
    await asyncio.wait([done])
    await asyncio.sleep(0.05)
    assert service.failure is None and await _health(service)

    async def broken() -> None:
        raise ValueError("bad alias")

    service.spawn("bootstrap-2", broken(), finishes=True)
    await _failed(service)
    assert service.failure is not None and "bootstrap-2" in service.failure


async def test_a_failure_before_the_server_starts_never_reports_serving() -> None:
    server = RpcServer("127.0.0.1:0", setup_telemetry("test"), drain_seconds=0.1)
    service = Service(server)

    async def dies() -> None:
        raise RuntimeError("boom")

    service.spawn("early", dies())
    await asyncio.wait_for(service.failed.wait(), 5)
    await asyncio.sleep(0.05)
    await server.start()
    try:
        assert not await _health(service)
    finally:
        await service.close()
        await server.stop()


class _Settings(ServiceSettings):
    service: ClassVar[str] = "runtimetest"


def test_run_exits_with_worker_failed_after_draining(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process entry point: serving, a worker dies, closers run, exit code 70."""
    monkeypatch.setenv("AIF_RUNTIMETEST_GRPC_PORT", "0")
    monkeypatch.setenv("AIF_RUNTIMETEST_METRICS_PORT", "0")
    monkeypatch.setenv("AIF_RUNTIMETEST_AUTH_MODE", "off")
    monkeypatch.setenv("AIF_RUNTIMETEST_DRAIN_SECONDS", "0.1")
    closed: list[str] = []

    async def build(settings: _Settings, telemetry: Telemetry) -> Service:
        service = Service(RpcServer(settings.grpc_address, telemetry, drain_seconds=settings.drain_seconds))

        async def consume() -> None:
            await asyncio.sleep(0.2)
            raise ConnectionError("group coordinator lost")

        async def close_store() -> None:
            closed.append("store")

        service.closers.append(close_store)
        service.spawn("consumer", consume())
        return service

    started = time.monotonic()
    # run() installs signal handlers, so it must own the main thread's loop. Should it go
    # on serving, a SIGTERM after 20 s stops it (a clean stop: no SystemExit, the test fails).
    watchdog = threading.Timer(20, lambda: os.kill(os.getpid(), signal.SIGTERM))
    watchdog.start()
    try:
        with pytest.raises(SystemExit) as exited:
            run(_Settings, build)
    finally:
        watchdog.cancel()
    assert exited.value.code == WORKER_FAILED == 70
    assert closed == ["store"]
    assert time.monotonic() - started < 10
