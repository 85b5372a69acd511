"""Client channels that carry the caller's trace context (and its token) in gRPC metadata."""

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
    """An aio channel to ``target`` that propagates the current trace (and sends ``token``)."""
    return grpc.aio.insecure_channel(target, options=list(options), interceptors=_interceptors(token))


@dataclass(frozen=True)
class ClientTls:
    """The CA that signed the server's certificate and, for mutual TLS, this client's own
    certificate and key (PEM bytes)."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_files(
        cls, ca: str | Path, cert: str | Path | None = None, key: str | Path | None = None
    ) -> ClientTls:
        return cls(
            Path(ca).read_bytes(),
            Path(cert).read_bytes() if cert else None,
            Path(key).read_bytes() if key else None,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)


def secure_channel(
    target: str, tls: ClientTls, options: Sequence[tuple[str, Any]] = (), *, token: Token | None = None
) -> grpc.aio.Channel:
    """A TLS (mutual TLS when ``tls`` has a client certificate) aio channel to ``target``.

    ``target``'s host must be named in the server certificate (dev certificates name
    localhost, 127.0.0.1 and the service name); ``grpc.ssl_target_name_override`` in
    ``options`` can say which name to expect instead.
    """
    return grpc.aio.secure_channel(
        target, tls.credentials(), options=list(options), interceptors=_interceptors(token)
    )
