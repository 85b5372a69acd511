"""One server interceptor for every service: authentication, authorisation, tracing,
metrics, typed errors.

Order of a call: the authenticator reads the metadata before the request is
deserialised (a caller without credentials gets no parser time); then, inside the
server span, the authorizer checks the deserialised request (its use case); then
the servicer runs. Refusals answer a fixed message per status, so a caller learns
nothing beyond UNAUTHENTICATED or PERMISSION_DENIED; the reason goes to a log line
(never the token) and to the ``aif.auth.denied`` counter.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from libs.errors import AifError, InvalidArgument, PermissionDenied, Unauthenticated
from libs.rpc.auth import Authenticator, Authorizer, Principal, current_principal, is_open
from libs.telemetry import Telemetry

log = logging.getLogger(__name__)

# What a refused caller is told, whatever the reason.
UNAUTHENTICATED_MESSAGE = "missing or invalid credentials"
PERMISSION_DENIED_MESSAGE = "permission denied"
MAX_DETAILS = 1024

_END = object()


class _Malformed:
    """Stands in for a request message that did not parse: the wrapper answers
    INVALID_ARGUMENT for it (gRPC itself would answer UNKNOWN, with the parser's message)."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError, or whatever a custom parser raises
            return _Malformed(type(exc).__name__)

    return parse


def _parsed(request: Any) -> Any:
    if isinstance(request, _Malformed):
        raise InvalidArgument("request", f"not a valid request message ({request.error})")
    return request


class _Failure(Exception):
    """An error already turned into a status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code, self.message = code, message


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, Unauthenticated):
        return exc.code, UNAUTHENTICATED_MESSAGE
    if isinstance(exc, PermissionDenied):
        return exc.code, PERMISSION_DENIED_MESSAGE
    if isinstance(exc, AifError):
        # Messages often quote the offending input: bounded, so a huge field cannot make the
        # reply's status (a header, 16 KiB at most) fail or the caller's input echo back in full.
        message = exc.message
        return exc.code, message if len(message) <= MAX_DETAILS else message[: MAX_DETAILS - 3] + "..."
    if isinstance(exc, NotImplementedError):
        # What generated base servicers raise for methods a service has not built yet.
        return grpc.StatusCode.UNIMPLEMENTED, "method not implemented"
    # Details of unexpected errors stay in the log, not in the reply.
    return grpc.StatusCode.INTERNAL, "internal error"


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self, telemetry: Telemetry, authenticator: Authenticator, authorizer: Authorizer | None = None
    ) -> None:
        self._tracer = telemetry.tracer
        self._auth = authenticator
        self._authz = authorizer
        meter = telemetry.meter
        self._requests = meter.create_counter(
            "aif.rpc.server.requests", description="gRPC requests by method and status code"
        )
        self._duration = meter.create_histogram(
            "aif.rpc.server.duration", unit="s", description="gRPC request duration"
        )
        self._attrs: dict[tuple[str, grpc.StatusCode], dict[str, str]] = {}
        self._denied = meter.create_counter(
            "aif.auth.denied", description="gRPC requests refused by authentication or authorisation"
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or is_open(details.method):
            return handler
        method = details.method
        # Read once: the authenticator and the server span's parent both need it.
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        principal, refused = self._authenticate(method, metadata)
        # A refused call's payload is never parsed: it reaches the wrapper as bytes.
        deserializer = None if refused else _tolerant(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, metadata, principal, refused, False),
                deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method, metadata, principal, refused, True),
                deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, metadata, principal, refused, False),
                deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(handler.stream_stream, method, metadata, principal, refused, True),
            deserializer,
            handler.response_serializer,
        )

    def _authenticate(
        self, method: str, metadata: dict[str, str]
    ) -> tuple[Principal | None, Exception | None]:
        try:
            return self._auth.authenticate(method, metadata), None
        except AifError as exc:
            return None, exc
        except Exception:  # noqa: BLE001 - a broken authenticator must refuse, not crash
            log.exception("authenticator failed on %s", method)
            return None, Unauthenticated("authenticator error", reason="authenticator_error")

    async def _authorize(self, principal: Principal, method: str, request: Any, streaming: bool) -> Any:
        """Checks a unary request; for a request stream, checks its first message before the
        servicer runs (a servicer that never reads the stream is still guarded) and every
        later message as the servicer reads it."""
        if not streaming:
            request = _parsed(request)
            if self._authz is not None:
                self._authz.authorize(principal, method, request)
            return request
        messages = aiter(request)
        first = await anext(messages, _END)
        if first is not _END:
            _parsed(first)
        if self._authz is not None:
            self._authz.authorize(principal, method, None if first is _END else first)
        return _checked_stream(self._authz, principal, method, first, messages)

    def _begin(self, method: str, metadata: dict[str, str]) -> Any:
        return self._tracer.start_as_current_span(
            method,
            context=propagate.extract(metadata),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.method": method},
        )

    def _finish(self, method: str, started: float, code: grpc.StatusCode) -> None:
        # One attribute mapping per method and status, made once: not a dict per call.
        attrs = self._attrs.get((method, code))
        if attrs is None:
            if len(self._attrs) > 4096:  # methods are a service's own: only unknown ones grow it
                self._attrs.clear()
            attrs = self._attrs[method, code] = {"rpc.method": method, "rpc.grpc.status_code": code.name}
        self._requests.add(1, attrs)
        self._duration.record(time.perf_counter() - started, attrs)

    def _fail(
        self,
        span: trace.Span,
        exc: BaseException,
        method: str,
        context: grpc.aio.ServicerContext,
        principal: Principal | None,
    ) -> _Failure:
        code, message = _status_of(exc)
        if code is grpc.StatusCode.INTERNAL:
            log.exception("unexpected error in %s", method)
        elif isinstance(exc, Unauthenticated | PermissionDenied):
            reason = exc.reason
            self._denied.add(1, {"rpc.method": method, "reason": reason})
            # The why, for operators only; exc.message never holds a credential.
            log.warning(
                "denied %s %s: %s (reason=%s subject=%s peer=%s)",
                code.name,
                method,
                exc.message,
                reason,
                principal.subject if principal else "-",
                context.peer(),
            )
        span.set_status(Status(StatusCode.ERROR, code.name))
        return _Failure(code, message)

    def _settle(self, principal: Principal, method: str) -> None:
        if self._authz is not None:
            self._authz.settle(principal, method)

    def _wrap_unary(
        self,
        behavior: Callable[..., Awaitable[Any]],
        method: str,
        metadata: dict[str, str],
        principal: Principal | None,
        refused: Exception | None,
        streaming: bool,
    ) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            failure: _Failure | None = None
            with self._begin(method, metadata) as span:
                token = None
                try:
                    if refused is not None or principal is None:
                        raise refused or Unauthenticated("no principal")
                    token = current_principal.set(principal)
                    request = await self._authorize(principal, method, request, streaming)
                    result = behavior(request, context)
                    # Generated base servicers are plain functions; ours are coroutines.
                    result = await result if inspect.isawaitable(result) else result
                    self._settle(principal, method)
                    return result
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception as exc:  # noqa: BLE001 - every error becomes a status
                    failure = self._fail(span, exc, method, context, principal)
                    code = failure.code
                finally:
                    if token is not None:
                        current_principal.reset(token)
                    self._finish(method, started, code)
            assert failure is not None
            await context.abort(failure.code, failure.message)

        return wrapper

    def _wrap_stream(
        self,
        behavior: Callable[..., AsyncIterator[Any]],
        method: str,
        metadata: dict[str, str],
        principal: Principal | None,
        refused: Exception | None,
        streaming: bool,
    ) -> Callable[..., AsyncIterator[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            failure: _Failure | None = None
            with self._begin(method, metadata) as span:
                token = None
                try:
                    if refused is not None or principal is None:
                        raise refused or Unauthenticated("no principal")
                    token = current_principal.set(principal)
                    request = await self._authorize(principal, method, request, streaming)
                    items: Any = behavior(request, context)
                    settled = False
                    if inspect.isasyncgen(items):
                        async for item in items:
                            if not settled:
                                self._settle(principal, method)
                                settled = True
                            yield item
                    else:
                        for item in items:
                            if not settled:
                                self._settle(principal, method)
                                settled = True
                            yield item
                    return
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception as exc:  # noqa: BLE001
                    failure = self._fail(span, exc, method, context, principal)
                    code = failure.code
                finally:
                    if token is not None:
                        current_principal.reset(token)
                    self._finish(method, started, code)
            assert failure is not None
            await context.abort(failure.code, failure.message)

        return wrapper


async def _checked_stream(
    authz: Authorizer | None, principal: Principal, method: str, first: Any, rest: AsyncIterator[Any]
) -> AsyncIterator[Any]:
    """The request stream again, with every later message parsed and authorised before the
    servicer sees it."""
    if first is _END:
        return
    yield first
    async for item in rest:
        _parsed(item)
        if authz is not None:
            authz.authorize(principal, method, item)
        yield item
