"""One server interceptor for every service: auth hook, tracing, metrics, typed errors."""
from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from libs.errors import AifError
from libs.rpc.auth import Authenticator, current_principal, is_open
from libs.telemetry import Telemetry

log = logging.getLogger(__name__)


class _Failure(Exception):
    """An error already turned into a status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code, self.message = code, message


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, AifError):
        return exc.code, exc.message
    if isinstance(exc, NotImplementedError):
        # What generated base servicers raise for methods a service has not built yet.
        return grpc.StatusCode.UNIMPLEMENTED, "method not implemented"
    # Details of unexpected errors stay in the log, not in the reply.
    return grpc.StatusCode.INTERNAL, "internal error"


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, telemetry: Telemetry, authenticator: Authenticator) -> None:
        self._tracer = telemetry.tracer
        self._auth = authenticator
        meter = telemetry.meter
        self._requests = meter.create_counter(
            "rpc.server.requests", description="gRPC requests by method and status code"
        )
        self._duration = meter.create_histogram(
            "rpc.server.duration", unit="s", description="gRPC request duration"
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
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method),
                handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                handler.request_deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(handler.stream_stream, method),
            handler.request_deserializer, handler.response_serializer)

    def _begin(self, method: str, context: grpc.aio.ServicerContext) -> Any:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        span_cm = self._tracer.start_as_current_span(
            method, context=propagate.extract(metadata), kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.method": method})
        return metadata, span_cm

    def _finish(self, method: str, started: float, code: grpc.StatusCode) -> None:
        attrs = {"rpc.method": method, "rpc.grpc.status_code": code.name}
        self._requests.add(1, attrs)
        self._duration.record(time.perf_counter() - started, attrs)

    def _fail(self, span: trace.Span, exc: BaseException, method: str) -> _Failure:
        code, message = _status_of(exc)
        if code is grpc.StatusCode.INTERNAL:
            log.exception("unexpected error in %s", method)
        span.set_status(Status(StatusCode.ERROR, code.name))
        return _Failure(code, message)

    def _wrap_unary(self, behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            metadata, span_cm = self._begin(method, context)
            failure: _Failure | None = None
            with span_cm as span:
                token = None
                try:
                    token = current_principal.set(self._auth.authenticate(method, metadata))
                    result = behavior(request, context)
                    # Generated base servicers are plain functions; ours are coroutines.
                    return await result if inspect.isawaitable(result) else result
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception as exc:  # noqa: BLE001 - every error becomes a status
                    failure = self._fail(span, exc, method)
                    code = failure.code
                finally:
                    if token is not None:
                        current_principal.reset(token)
                    self._finish(method, started, code)
            assert failure is not None
            await context.abort(failure.code, failure.message)

        return wrapper

    def _wrap_stream(self, behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., AsyncIterator[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            metadata, span_cm = self._begin(method, context)
            failure: _Failure | None = None
            with span_cm as span:
                token = None
                try:
                    token = current_principal.set(self._auth.authenticate(method, metadata))
                    items = behavior(request, context)
                    if inspect.isasyncgen(items):
                        async for item in items:
                            yield item
                    else:
                        for item in items:
                            yield item
                    return
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception as exc:  # noqa: BLE001
                    failure = self._fail(span, exc, method)
                    code = failure.code
                finally:
                    if token is not None:
                        current_principal.reset(token)
                    self._finish(method, started, code)
            assert failure is not None
            await context.abort(failure.code, failure.message)

        return wrapper
