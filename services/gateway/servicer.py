"""The gateway's gRPC edge: the business API and the Open Inference Protocol.

Both hand every inference to the one :class:`~services.gateway.core.DataPlane`.

- :class:`GatewayServicer` (``aifactory.gateway.v1.GatewayService``): behind the shared
  interceptor, which authenticates, traces and turns ``libs.errors`` into statuses.
- :class:`OipServicer` (KServe v2 ``inference.GRPCInferenceService``, as Triton; the
  model name is the use case): a generic handler on its own server, with no
  interceptor (spans and metrics per call cost more than the whole pass-through), so
  it checks tokens itself (:mod:`services.gateway.auth`) and sets statuses itself.
  ``ModelInfer`` takes and returns bytes: it parses only what it needs and forwards
  the caller's bytes (:mod:`services.gateway.oip`). Errors: unknown model → NOT_FOUND;
  wrong input name, datatype, shape or size → INVALID_ARGUMENT naming the input;
  Triton down → UNAVAILABLE at once (circuit); Triton's own errors pass through with
  their code. Model control, shared memory, trace and log settings: UNIMPLEMENTED.
  ``ServerLive`` and ``ServerReady`` are open, like health checks; every other method
  (metadata and statistics included) needs a token, checked from the call's metadata
  *before* its body is parsed: a caller without credentials costs no decoding, however
  large its message. Concurrent calls are capped per caller and per stream
  (:class:`Inflight`); beyond the cap a call answers RESOURCE_EXHAUSTED at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry import metrics, trace
from tritonclient.grpc import service_pb2

from aifactory.gateway.v1 import gateway_service_pb2 as pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc
from libs.errors import AifError, NotFound, StatusError, clip
from services.gateway import convert, oip
from services.gateway.auth import OipAuth
from services.gateway.core import DataPlane
from services.gateway.feedback import FeedbackRecorder
from services.gateway.models import ModelManager, Served
from services.gateway.triton import SERVICE, Triton

# Methods anyone may call (health checks); every other one needs a token.
OPEN_METHODS = frozenset({"ServerLive", "ServerReady"})


class ResourceExhausted(StatusError):
    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def _traceparent() -> str:
    """The current span's W3C trace context, for the prediction log ("" without a trace)."""
    ctx = trace.get_current_span().get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}" if ctx.is_valid else ""


class GatewayServicer(gateway_service_pb2_grpc.GatewayServiceServicer):
    def __init__(self, plane: DataPlane, feedback: FeedbackRecorder) -> None:
        self._plane = plane
        self._feedback = feedback

    async def Predict(self, request: pb.PredictRequest, context: Any) -> pb.PredictResponse:
        answers = await self._plane.predict(
            request.use_case,
            [convert.to_input(request.entity_id, request.features)],
            _traceparent(),
            batch=False,
        )
        return pb.PredictResponse(prediction=convert.to_predictions(answers, [request.entity_id])[0])

    async def PredictBatch(self, request: pb.PredictBatchRequest, context: Any) -> pb.PredictBatchResponse:
        answers = await self._plane.predict(
            request.use_case, convert.to_inputs(request.inputs), _traceparent(), batch=True
        )
        return pb.PredictBatchResponse(
            predictions=convert.to_predictions(answers, (i.entity_id for i in request.inputs))
        )

    async def RecordFeedback(
        self, request: pb.RecordFeedbackRequest, context: Any
    ) -> pb.RecordFeedbackResponse:
        return pb.RecordFeedbackResponse(feedback_id=await self._feedback.record(request))


@dataclass
class OipStats:
    requests: int = 0
    failed: int = 0
    refused: int = 0  # calls over a concurrency cap


class Inflight:
    """Calls in flight per caller (the token's subject, else the peer's address), capped."""

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller
        self._calls: dict[str, int] = {}

    def enter(self, caller: str) -> None:
        n = self._calls.get(caller, 0)
        if n >= self.per_caller:
            raise ResourceExhausted(f"more than {self.per_caller} calls in flight for this caller")
        self._calls[caller] = n + 1

    def leave(self, caller: str) -> None:
        n = self._calls.get(caller, 1) - 1
        if n:
            self._calls[caller] = n
        else:
            self._calls.pop(caller, None)


def _peer_host(context: grpc.aio.ServicerContext) -> str:
    """The peer without its port ("ipv4:127.0.0.1:5000" → "ipv4:127.0.0.1"): a caller is a host."""
    peer_of = getattr(context, "peer", None)  # a REST call's stand-in context has none
    peer = (peer_of() if peer_of is not None else "") or ""
    return peer.rsplit(":", 1)[0] if peer.count(":") > 1 else peer


class OipServicer:
    def __init__(
        self,
        plane: DataPlane,
        models: ModelManager,
        triton: Triton,
        auth: OipAuth | None = None,
        *,
        max_inflight_per_caller: int = 256,
        max_inflight_per_stream: int = 64,
    ) -> None:
        self._plane = plane
        self._inflight = Inflight(max_inflight_per_caller)
        self._per_stream = max_inflight_per_stream
        self._models = models
        self._served = models.served  # the dict the manager replaces entries of
        self._triton = triton
        self._auth = auth
        self.stats = OipStats()
        # Latency of each successful ModelInfer in the gateway (Prometheus
        # aif_gateway_oip_duration_seconds): one histogram record, a few µs, per call.
        self._duration = metrics.get_meter("aifactory.gateway").create_histogram(
            "aif.gateway.oip.duration",
            unit="s",
            description="Open Inference Protocol ModelInfer latency in the gateway, request in to reply out",
        )

    # -- registration -------------------------------------------------------------------

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        def unary(fn: Callable[..., Any], req: Any, resp: Any = None) -> grpc.RpcMethodHandler:
            method = req.DESCRIPTOR.name.removesuffix("Request")
            authenticate = method not in OPEN_METHODS and self._auth is not None

            async def parsed(request: bytes, context: grpc.aio.ServicerContext) -> Any:
                if authenticate:
                    # Credentials before the body: an anonymous caller's bytes are never parsed.
                    try:
                        self._auth.authenticate(method, context.invocation_metadata())  # type: ignore[union-attr]
                    except AifError as exc:
                        await context.abort(exc.code, exc.message)
                # Parsed here, not by gRPC: a bad request answers INVALID_ARGUMENT, not UNKNOWN.
                try:
                    message = req.FromString(request)
                except DecodeError:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a {req.DESCRIPTOR.name}")
                return await fn(message, context)

            return grpc.unary_unary_rpc_method_handler(
                parsed if req else fn, response_serializer=resp.SerializeToString if resp else None
            )

        p = service_pb2
        handlers: dict[str, grpc.RpcMethodHandler] = {
            # Bytes in, bytes out: no (de)serialisation by gRPC on the hot path.
            "ModelInfer": grpc.unary_unary_rpc_method_handler(self.model_infer),
            "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(self.model_stream_infer),
            "ServerLive": unary(self.server_live, p.ServerLiveRequest, p.ServerLiveResponse),
            "ServerReady": unary(self.server_ready, p.ServerReadyRequest, p.ServerReadyResponse),
            "ModelReady": unary(self.model_ready, p.ModelReadyRequest, p.ModelReadyResponse),
            "ServerMetadata": unary(self.server_metadata, p.ServerMetadataRequest, p.ServerMetadataResponse),
            "ModelMetadata": unary(self.model_metadata, p.ModelMetadataRequest),
            "ModelConfig": unary(self.model_config, p.ModelConfigRequest),
            "ModelStatistics": unary(
                self.model_statistics, p.ModelStatisticsRequest, p.ModelStatisticsResponse
            ),
            "RepositoryIndex": unary(
                self.repository_index, p.RepositoryIndexRequest, p.RepositoryIndexResponse
            ),
        }
        for name, why in oip.UNIMPLEMENTED.items():
            handlers[name] = grpc.unary_unary_rpc_method_handler(self._unimplemented(why))
        return handlers

    def register(self, server: grpc.aio.Server) -> None:
        handlers = self.method_handlers()
        # As generated code does: the generic handler, plus registered methods (gRPC core
        # then matches the method without a lookup in Python per call).
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        add = getattr(server, "add_registered_method_handlers", None)
        if add is not None:
            add(SERVICE, handlers)

    @staticmethod
    def _unimplemented(why: str) -> Callable[..., Any]:
        async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, why)

        return handler

    # -- inference ----------------------------------------------------------------------

    def _caller(self, context: grpc.aio.ServicerContext, method: str) -> tuple[str, Any]:
        """Who calls (for the per-caller cap) and their principal; credentials are checked
        here, before anything of the request is parsed."""
        if self._auth is None:
            return _peer_host(context), None
        principal = self._auth.authenticate(method, context.invocation_metadata())
        return principal.subject, principal

    async def model_infer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.perf_counter()
        caller = ""
        try:
            caller, principal = self._caller(context, "ModelInfer")
            self._inflight.enter(caller)
        except AifError as exc:
            self.stats.failed += 1
            self.stats.refused += isinstance(exc, ResourceExhausted)
            await context.abort(exc.code, exc.message)
        try:
            reply = await self._infer(request, context, principal)
        except AifError as exc:
            self.stats.failed += 1
            await context.abort(exc.code, exc.message)
            raise  # unreachable: abort raises
        finally:
            self._inflight.leave(caller)
        self._duration.record(time.perf_counter() - started)
        return reply

    async def model_stream_infer(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Each request is answered on the stream as it completes (errors in ``error_message``).
        The stream's credentials are checked once, before its first message is read; a
        request beyond the stream's or the caller's cap of calls in flight is answered
        with a RESOURCE_EXHAUSTED ``error_message`` and not run."""
        try:
            caller, principal = self._caller(context, "ModelStreamInfer")
        except AifError as exc:
            self.stats.failed += 1
            await context.abort(exc.code, exc.message)
        replies: asyncio.Queue[bytes | None] = asyncio.Queue()
        inflight = 0

        def refused(why: str) -> bytes:
            self.stats.failed += 1
            self.stats.refused += 1
            return service_pb2.ModelStreamInferResponse(
                error_message=f"RESOURCE_EXHAUSTED: {why}"
            ).SerializeToString()

        async def one(request: bytes) -> None:
            nonlocal inflight
            started = time.perf_counter()
            try:
                reply = oip.encode_field(
                    oip.STREAM_RESPONSE_TAG, await self._infer(request, context, principal)
                )
                self._duration.record(time.perf_counter() - started)
            except AifError as exc:
                self.stats.failed += 1
                reply = service_pb2.ModelStreamInferResponse(error_message=exc.message).SerializeToString()
            finally:
                inflight -= 1
                self._inflight.leave(caller)
            await replies.put(reply)

        async def read() -> None:
            nonlocal inflight
            tasks = []
            async for request in requests:
                if inflight >= self._per_stream:
                    await replies.put(
                        refused(f"more than {self._per_stream} requests in flight on this stream")
                    )
                    continue
                try:
                    self._inflight.enter(caller)
                except ResourceExhausted as exc:
                    await replies.put(refused(exc.message))
                    continue
                inflight += 1
                tasks.append(asyncio.get_running_loop().create_task(one(request)))
            await asyncio.gather(*tasks)
            await replies.put(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (reply := await replies.get()) is not None:
                yield reply
        finally:
            reader.cancel()

    def _infer(
        self, request: bytes, context: grpc.aio.ServicerContext, principal: Any = None
    ) -> Awaitable[bytes]:
        # Not a coroutine itself: the data plane's call is awaited by the caller, one frame less.
        # Credentials first (``principal``, when the caller checked them already): only then
        # is the body parsed.
        self.stats.requests += 1
        if principal is None and self._auth is not None:
            principal = self._auth.authenticate("ModelInfer", context.invocation_metadata())
        msg = oip.parse(request)
        served = self._known(msg.model_name, context, "ModelInfer", principal)
        return self._plane.infer(served, msg, request, oip.traceparent(context.invocation_metadata()))

    # -- the rest of the protocol -------------------------------------------------------

    def _known(
        self,
        name: str,
        context: grpc.aio.ServicerContext,
        method: str = "ModelMetadata",
        principal: Any = None,
    ) -> Served:
        """The served model ``name``, for a caller allowed to request its predictions.
        Credentials first: a caller without them learns nothing, not even which models exist."""
        if principal is None and self._auth is not None:
            principal = self._auth.authenticate(method, context.invocation_metadata())
        served = self._served.get(name)
        if served is None:
            raise NotFound(f"unknown model {clip(name)!r}")
        if self._auth is not None and principal is not None:
            self._auth.authorize(principal, name)
        return served

    async def _guard(self, context: grpc.aio.ServicerContext, fn: Callable[[], Any]) -> Any:
        try:
            return await fn()
        except AifError as exc:
            await context.abort(exc.code, exc.message)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")

    async def server_live(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ready = self._triton.up and all(
            s.routing is not None or self._models.desired(s.use_case) is None for s in self._served.values()
        )
        return service_pb2.ServerReadyResponse(ready=ready)

    @staticmethod
    def _version(served: Served, version: str) -> str:
        routing = served.routing
        if routing is None:
            raise NotFound(f"model {served.use_case!r} has no champion being served")
        if not version:
            return str(routing.champion)
        parsed = oip.parse_version(version)
        if parsed is None or parsed not in routing.versions:
            raise NotFound(f"model {served.use_case!r} version {version} is not served")
        return str(parsed)

    async def model_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def run() -> Any:
            served = self._known(request.name, context)
            if served.routing is None:
                return service_pb2.ModelReadyResponse(ready=False)
            version = self._version(served, request.version)
            ready = self._triton.up and await self._triton.model_ready(served.model, int(version))
            return service_pb2.ModelReadyResponse(ready=ready)

        return await self._guard(context, run)

    async def server_metadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def run() -> Any:
            raw = await self._triton.forward("ServerMetadata", request.SerializeToString())
            triton = service_pb2.ServerMetadataResponse.FromString(raw)
            return service_pb2.ServerMetadataResponse(
                name="aifactory-gateway",
                version=triton.version,
                extensions=[e for e in triton.extensions if e not in oip.UNSERVED_EXTENSIONS],
            )

        return await self._guard(context, run)

    async def _forward_versioned(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        async def run() -> Any:
            served = self._known(request.name, context)
            request.version = self._version(served, request.version)
            request.name = served.model
            return await self._triton.forward(method, request.SerializeToString())

        return await self._guard(context, run)  # type: ignore[no-any-return]

    async def model_metadata(self, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        return await self._forward_versioned("ModelMetadata", request, context)

    async def model_config(self, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        return await self._forward_versioned("ModelConfig", request, context)

    async def model_statistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def run() -> Any:
            if request.name:
                self._known(request.name, context)
            raw = await self._triton.forward("ModelStatistics", request.SerializeToString())
            stats = service_pb2.ModelStatisticsResponse.FromString(raw)
            if not request.name:
                # Only the use cases this caller may request predictions of.
                kept = [s for s in stats.model_stats if s.name in self._served and self._may(s.name, context)]
                del stats.model_stats[:]
                stats.model_stats.extend(kept)
            return stats

        return await self._guard(context, run)

    def _may(self, use_case: str, context: grpc.aio.ServicerContext) -> bool:
        if self._auth is None:
            return True
        try:
            self._auth.check("ModelStatistics", context.invocation_metadata(), use_case)
        except AifError:
            return False
        return True

    async def repository_index(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def run() -> Any:
            if self._auth is not None:
                self._auth.check("RepositoryIndex", context.invocation_metadata(), None)
            index = service_pb2.RepositoryIndexResponse.FromString(
                await self._triton.forward("RepositoryIndex", request.SerializeToString())
            )
            kept = [m for m in index.models if m.name in self._served]
            del index.models[:]
            index.models.extend(kept)
            return index

        return await self._guard(context, run)
