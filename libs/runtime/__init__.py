"""The life of a service process: settings → telemetry → build → serve → stop.

Each service's ``__main__`` only names its settings class and its ``build``
function; everything they share (logging, config errors, SIGTERM) lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from libs.auth import redaction
from libs.bus.security import require_kafka_tls
from libs.errors import ConfigError
from libs.rpc import RpcServer, serve
from libs.settings import ServiceSettings, load_settings
from libs.telemetry import JsonFormatter, Telemetry, setup_telemetry

S = TypeVar("S", bound=ServiceSettings)


log = logging.getLogger(__name__)


# Exit status of a process whose background work ended unexpectedly (EX_SOFTWARE in
# sysexits.h): not a clean stop, so a supervisor (supervisord, Kubernetes) restarts it.
WORKER_FAILED = 70
# How long closing may take after such a failure before the process exits anyway: a
# dependency that killed the worker may also hang a graceful stop.
CLOSE_AFTER_FAILURE_S = 30.0


@dataclass
class Service:
    """A built service: its gRPC server, its background tasks, and what to close after
    it has drained (in reverse order of registration).

    Background work is watched: a task that ends unexpectedly (an error, a cancellation
    from elsewhere, or returning while the service is not closing) fails the service at
    once: every health status turns NOT_SERVING and ``failed`` is set, on which
    :func:`run` drains, closes and exits with :data:`WORKER_FAILED`. A process that
    embeds the service (tests) sees the health and ``failed`` and decides for itself.
    """

    server: RpcServer
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    # Why the service failed (the first failure only); None while healthy.
    failure: str | None = None
    closing: bool = False
    _health_updates: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def spawn(
        self,
        name: str,
        work: Coroutine[Any, Any, None],
        *,
        stop: Callable[[], Awaitable[None]] | None = None,
        finishes: bool = False,
    ) -> asyncio.Task[None]:
        """Run ``work`` in the background for the life of the service.

        At close, ``stop`` (when given: a graceful stop, e.g. a consumer's) is awaited and
        then the task; without ``stop`` the task is cancelled. ``finishes``: the work ends
        by itself when done (a start-up bootstrap), so returning is not a failure; an
        error still is.
        """
        task = asyncio.get_running_loop().create_task(work, name=name)
        self.watch(task, finishes=finishes)

        async def close() -> None:
            if stop is not None:
                await stop()
            else:
                task.cancel()
            # A task that failed was logged when it ended; closing goes on with the rest.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

        self.closers.append(close)
        return task

    def watch(self, task: asyncio.Task[Any], *, finishes: bool = False) -> None:
        """Fail the service when ``task`` (started and stopped by its owner, e.g. a core's
        worker) ends unexpectedly, as for :meth:`spawn`."""
        self.tasks.append(task)
        task.add_done_callback(lambda t: self._ended(t, finishes))

    def _ended(self, task: asyncio.Task[Any], finishes: bool) -> None:
        name = task.get_name()
        error = None if task.cancelled() else task.exception()
        if self.closing:
            if error is not None:
                log.error("background task %s ended with an error while closing", name, exc_info=error)
            return
        if task.cancelled():
            self.fail(f"background task {name} was cancelled while the service was running")
        elif error is not None:
            self.fail(f"background task {name} ended with an error: {error!r}", error)
        elif not finishes:
            self.fail(f"background task {name} returned while the service was running")

    def fail(self, reason: str, error: BaseException | None = None) -> None:
        """Mark the service failed: health NOT_SERVING now, and ``failed`` set so that the
        process stops for a restart. Only the first failure counts; ignored while closing."""
        if self.failure is not None or self.closing:
            return
        self.failure = reason
        log.critical("%s; health NOT_SERVING, stopping for a restart", reason, exc_info=error)
        update = asyncio.get_running_loop().create_task(self.server.fail(), name="health-not-serving")
        # Held until done: the loop keeps only a weak reference to a task.
        self._health_updates.add(update)
        update.add_done_callback(self._health_updates.discard)
        self.failed.set()

    async def close(self) -> None:
        self.closing = True
        for close in reversed(self.closers):
            await close()


Builder = Callable[[S, Telemetry], Awaitable[Service]]


def configure_logging(service: str, level: str, fmt: str = "text") -> None:
    """Log lines to stderr: text, or JSON with the current trace (``fmt="json"``)."""
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if fmt == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter(service))
    # Tokens, passwords and keys are masked in every line, whoever logs them.
    redaction.install()
    # aiokafka logs every rebalance step at INFO.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))


async def start_service(settings: S, build: Builder[S]) -> tuple[Service, Telemetry]:
    """Build and start a service in the running loop (tests use this in-process)."""
    telemetry = setup_telemetry(
        settings.service,
        trace_exporter=settings.trace_exporter,
        metrics_host=settings.metrics_host,
        metrics_port=settings.metrics_port,
    )
    # The OTLP log handler (OTEL_LOGS_EXPORTER) masks secrets too.
    redaction.install()
    service = await build(settings, telemetry)
    return service, telemetry


def settle_gc() -> None:
    """Keep the garbage collector's pauses off the request path of a long-running service.

    What start-up loaded (modules, protobuf descriptors, clients: hundreds of thousands of
    objects) is moved out of the collector's reach (``gc.freeze``), so a full collection
    no longer walks it; and young collections run every 10,000 allocations instead of 700
    (fewer, still sub-millisecond, pauses). Cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def run(settings_cls: type[S], build: Builder[S]) -> None:
    """Entry point of a service process; exits 2 with the reason on bad configuration,
    :data:`WORKER_FAILED` after a background task ended unexpectedly (once drained)."""
    try:
        settings = load_settings(settings_cls)
        require_kafka_tls(settings)  # PLAINTEXT only with AIF_KAFKA_ALLOW_PLAINTEXT=1
    except ConfigError as exc:
        print(f"{settings_cls.service}: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.service, settings.log_level, settings.log_format)

    async def main() -> int:
        service, telemetry = await start_service(settings, build)
        settle_gc()

        async def close() -> None:
            if service.failure is None:
                await service.close()
                return
            try:
                await asyncio.wait_for(service.close(), CLOSE_AFTER_FAILURE_S)
            except TimeoutError:
                log.error("closing took over %.0fs after the failure; exiting anyway", CLOSE_AFTER_FAILURE_S)

        try:
            await serve(service.server, on_stop=close, failed=service.failed)
        finally:
            telemetry.shutdown()
        return 0 if service.failure is None else WORKER_FAILED

    try:
        code = asyncio.run(main())
    except ConfigError as exc:
        logging.getLogger(settings.service).error("%s", exc.message)
        raise SystemExit(2) from None
    if code:
        raise SystemExit(code)
