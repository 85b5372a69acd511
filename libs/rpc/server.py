"""gRPC server bootstrap shared by the seven services.

``RpcServer`` builds a ``grpc.aio`` server with the standard health service,
server reflection and the shared interceptor; ``serve`` runs it until SIGTERM or
SIGINT, then marks health NOT_SERVING and drains in-flight requests for
``drain_seconds`` before stopping.

Who may call is decided by a :class:`ServerSecurity` (``libs.auth.server_security``
builds it from settings): the authenticator and authorizer the interceptor runs, and
optionally TLS, with client certificates required when a client CA is given (mutual
TLS between services).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from libs.errors import ConfigError
from libs.rpc.auth import AllowAll, Authenticator, ServerSecurity
from libs.rpc.interceptor import ServerInterceptor
from libs.telemetry import Telemetry

log = logging.getLogger(__name__)

# Large batches (ingestion, batch predict) exceed gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class RpcServer:
    def __init__(
        self,
        address: str,
        telemetry: Telemetry,
        *,
        security: ServerSecurity | None = None,
        authenticator: Authenticator | None = None,
        drain_seconds: float = 5.0,
    ) -> None:
        """``authenticator`` alone (no authorizer, no TLS) is a shortcut for tests; services
        pass ``security``."""
        if security is None:
            security = ServerSecurity(authenticator=authenticator or AllowAll())
        elif authenticator is not None:
            raise ValueError("pass either security or authenticator, not both")
        self._address = address
        self._drain = drain_seconds
        self._tls = security.tls
        self._server = grpc.aio.server(
            interceptors=[ServerInterceptor(telemetry, security.authenticator, security.authorizer)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._names: list[str] = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        self._failed = False
        # Health names the service reports on its own (its use cases), beside its services'.
        self._reported: dict[str, bool] = {}
        self.port = 0

    @property
    def server(self) -> grpc.aio.Server:
        return self._server

    def add_service(
        self, add_to_server: Callable[[Any, grpc.aio.Server], None], servicer: Any, full_name: str
    ) -> None:
        """Register ``servicer`` (``add_XServiceServicer_to_server``, its full proto name)."""
        add_to_server(servicer, self._server)
        self._names.append(full_name)

    async def start(self) -> int:
        reflection.enable_server_reflection([*self._names, reflection.SERVICE_NAME], self._server)
        if self._tls is None:
            self.port = self._server.add_insecure_port(self._address)
        else:
            credentials = grpc.ssl_server_credentials(
                [(self._tls.key, self._tls.cert)],
                root_certificates=self._tls.client_ca,
                require_client_auth=self._tls.client_ca is not None,
            )
            self.port = self._server.add_secure_port(self._address, credentials)
        if not self.port:
            raise ConfigError(f"cannot listen on {self._address}: address in use or invalid")
        await self._server.start()
        # "" is the whole server; each service also reports under its own name. A service
        # whose background work died while it was being built never reports SERVING.
        status = (
            health_pb2.HealthCheckResponse.NOT_SERVING
            if self._failed
            else health_pb2.HealthCheckResponse.SERVING
        )
        for name in ["", *self._names]:
            await self._health.set(name, status)
        transport = (
            "plaintext" if self._tls is None else ("mutual TLS" if self._tls.client_ca is not None else "TLS")
        )
        log.info("gRPC serving %s on port %d (%s)", ", ".join(self._names[1:]), self.port, transport)
        return self.port

    async def fail(self) -> None:
        """Report NOT_SERVING under every name, for good: the process lost work it must do
        (a background worker died) and is about to stop for a restart."""
        self._failed = True
        for name in ["", *self._names, *self._reported]:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def report_health(self, name: str, serving: bool) -> None:
        """Report a health name of the service's own (``usecase/<name>``: whether it has
        that use case set up) beside the server's; works before and after :meth:`start`.
        A failed server reports NOT_SERVING under it too."""
        self._reported[name] = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving and not self._failed
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._health.set(name, status)

    async def stop(self) -> None:
        """Refuse new calls, let in-flight ones finish within the drain time, then stop."""
        await self._health.enter_graceful_shutdown()
        await self._server.stop(self._drain)

    async def wait(self) -> None:
        await self._server.wait_for_termination()


async def serve(
    server: RpcServer,
    *,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    failed: asyncio.Event | None = None,
) -> None:
    """Run ``server`` until SIGTERM/SIGINT (or until ``failed`` is set: the service can no
    longer do its work), then drain it and run ``on_stop``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    waits = [loop.create_task(stop.wait())]
    if failed is not None:
        waits.append(loop.create_task(failed.wait()))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    if failed is not None and failed.is_set():
        log.error("stopping after a failure: draining in-flight requests")
    else:
        log.info("stopping: draining in-flight requests")
    await server.stop()
    if on_stop is not None:
        await on_stop()
    log.info("stopped")
