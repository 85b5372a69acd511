"""Client channels that carry the caller's trace context (and its token) in gRPC metadata.

:func:`channel` is the one factory every internal gRPC client goes through: with a
:class:`ClientTls` (from settings: ``libs.auth.tls.client_tls``) it speaks TLS or mutual
TLS, without one plaintext, so turning TLS on for a service never cuts its callers off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from opentelemetry import propagate

# A bearer token, or a function returning the current one (tokens expire and are renewed).
Token = str | Callable[[], str]


def _with_context(details: grpc.aio.ClientCallDetails, token: Token | None) -> grpc.aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in carrier.items():
        metadata.add(key, value)
    if token is not None and "authorization" not in metadata:
        metadata.add("authorization", f"Bearer {token() if callable(token) else token}")
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _ContextUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: Token | None) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_context(details, self._token), request)


class _ContextStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, token: Token | None) -> None:
        self._token = token

    async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_context(details, self._token), request_iterator)


class _ContextUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: Token | None) -> None:
        self._token = token

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_context(details, self._token), request)


def _interceptors(token: Token | None) -> list[grpc.aio.ClientInterceptor]:
    return [_ContextUnaryUnary(token), _ContextStreamUnary(token), _ContextUnaryStream(token)]


def insecure_channel(
    target: str, options: Sequence[tuple[str, Any]] = (), *, token: Token | None = None
) -> grpc.aio.Channel:
    """A plaintext :func:`channel` (tests and local tools; services pass their settings' TLS)."""
    return channel(target, None, options, token=token)


@dataclass(frozen=True)
class ClientTls:
    """The CA that signed the server's certificate and, for mutual TLS, this client's own
    certificate and key (PEM bytes). ``server_name``: the name to expect in the server's
    certificate when the target's host is not in it (an address behind a proxy, say)."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)
    server_name: str = ""

    @classmethod
    def from_files(
        cls,
        ca: str | Path,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        *,
        server_name: str = "",
    ) -> ClientTls:
        return cls(
            Path(ca).read_bytes(),
            Path(cert).read_bytes() if cert else None,
            Path(key).read_bytes() if key else None,
            server_name,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)

    def options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def channel(
    target: str,
    tls: ClientTls | None,
    options: Sequence[tuple[str, Any]] = (),
    *,
    token: Token | None = None,
    plain: bool = False,
) -> grpc.aio.Channel:
    """The aio channel every internal client uses: TLS (mutual TLS when ``tls`` has a client
    certificate) when ``tls`` is given, plaintext when it is None (local development).

    It propagates the current trace and sends ``token``; ``plain`` leaves both out (no
    interceptors: a hot path that sets its own metadata per call, as the gateway's feature
    reads do). ``target``'s host must be named in the server certificate (dev certificates
    name localhost, 127.0.0.1 and the service), or ``tls.server_name`` says which name to expect.
    """
    if plain and token is not None:
        raise ValueError("a plain channel sends no token: set it per call")
    opts = [*options, *(tls.options() if tls is not None else [])]
    interceptors = None if plain else _interceptors(token)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=opts, interceptors=interceptors)
    return grpc.aio.secure_channel(target, tls.credentials(), options=opts, interceptors=interceptors)


def blocking_channel(
    target: str, tls: ClientTls | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A synchronous channel (CLI commands, health probes) with the same TLS rules as :func:`channel`."""
    opts = [*options, *(tls.options() if tls is not None else [])]
    if tls is None:
        return grpc.insecure_channel(target, options=opts)
    return grpc.secure_channel(target, tls.credentials(), options=opts)


def secure_channel(
    target: str, tls: ClientTls, options: Sequence[tuple[str, Any]] = (), *, token: Token | None = None
) -> grpc.aio.Channel:
    """A TLS channel to ``target``: :func:`channel` with ``tls`` required."""
    return channel(target, tls, options, token=token)
