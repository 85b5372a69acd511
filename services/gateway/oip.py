"""The Open Inference Protocol (KServe v2 ``inference.GRPCInferenceService``) in front of Triton.

Any OIP client (tritonclient, perf_analyzer) works against the gateway as against
Triton; the model name is the use case. ``ModelInfer`` is the hot path and works on
bytes: the request is parsed only to validate it and read the fields the gateway
needs (upb parses a small message in microseconds), and the caller's own bytes are
forwarded, with the routed ``model_version`` (and, when the caller sent none, the
prediction ``id``) appended as extra fields: protobuf keeps the last value of a
repeated scalar field, so nothing is re-encoded. Triton's reply is returned as it
came. Under load, the rows of concurrent requests are coalesced into one Triton call
(:mod:`services.gateway.triton`), and only then are replies rebuilt.

- Routing as for the business API. A request may pin a served version
  (``model_version``); else canary stickiness uses the request parameter
  ``entity_id`` (string), then the request ``id``.
- The prediction id is the request ``id``, or a new one, returned as the reply's ``id``;
  a request of several rows logs ``<id>/<row>`` per row.
- Errors: unknown model → NOT_FOUND; wrong input name, datatype, shape or size →
  INVALID_ARGUMENT naming the input; Triton down → UNAVAILABLE at once (circuit);
  Triton's own errors pass through with their code.
- Model control, shared memory, trace and log settings are not served (UNIMPLEMENTED):
  the registry decides what is loaded, and shared memory does not cross a network hop.
- Authentication (when on): the bearer token of the call, checked against the
  permission table as ``predictions.request`` in the model's use case; a verified
  token is remembered for a few seconds so the hot path does not verify a signature
  per call. ``ServerLive`` and ``ServerReady`` are open, like health checks.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2

from libs.errors import AifError
from libs.rpc.auth import Authenticator, Principal
from services.gateway.ids import prediction_id
from services.gateway.models import ModelManager, Served
from services.gateway.predlog import PredictionLog
from services.gateway.predlog import Served as LogEntry
from services.gateway.routing import CHALLENGER, Route
from services.gateway.triton import SERVICE, Rows, Triton, TritonUnavailable

log = logging.getLogger(__name__)

INPUT = "INPUT"
_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND)
_UNSERVED_EXTENSIONS = {"model_repository", "model_repository(unload_dependents)", "system_shared_memory",
                        "cuda_shared_memory", "trace", "logging"}
_UNIMPLEMENTED = {
    "RepositoryModelLoad": "model control belongs to the registry: promote a version there",
    "RepositoryModelUnload": "model control belongs to the registry: promote a version there",
    "SystemSharedMemoryStatus": "shared memory does not cross the gateway",
    "SystemSharedMemoryRegister": "shared memory does not cross the gateway",
    "SystemSharedMemoryUnregister": "shared memory does not cross the gateway",
    "CudaSharedMemoryStatus": "shared memory does not cross the gateway",
    "CudaSharedMemoryRegister": "shared memory does not cross the gateway",
    "CudaSharedMemoryUnregister": "shared memory does not cross the gateway",
    "TraceSetting": "not served by the gateway",
    "LogSettings": "not served by the gateway",
}


class OipError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _field(tag: int, value: bytes) -> bytes:
    """One length-delimited field, encoded (tag byte, varint length, bytes)."""
    n = len(value)
    out = bytearray((tag,))
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + value


_VERSION_TAG = (2 << 3) | 2  # ModelInferRequest.model_version
_ID_TAG = (3 << 3) | 2  # ModelInferRequest.id
_STREAM_RESPONSE_TAG = (2 << 3) | 2  # ModelStreamInferResponse.infer_response


class OipAuth:
    """Bearer-token check for the OIP server (it has no shared interceptor)."""

    def __init__(self, authenticator: Authenticator, authorizer: Any | None, ttl_s: float = 5.0) -> None:
        self._authn = authenticator
        self._authz = authorizer
        self._ttl = ttl_s
        self._cache: dict[str, tuple[Principal, float]] = {}

    def check(self, method: str, metadata: Any, use_case: str | None) -> Principal:
        """The caller, who must hold ``predictions.request`` in ``use_case`` (when given)."""
        principal = self.authenticate(method, metadata)
        if use_case is not None:
            self.authorize(principal, use_case)
        return principal

    def authenticate(self, method: str, metadata: Any) -> Principal:
        token = ""
        for key, value in metadata or ():
            if key == "authorization":
                token = value
                break
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            principal = self._authn.authenticate(method, {"authorization": token} if token else {})
        except AifError as exc:
            raise OipError(exc.code, "missing or invalid credentials") from None
        if token:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (principal, now + self._ttl)
        return principal

    def authorize(self, principal: Principal, use_case: str) -> None:
        if self._authz is not None:
            from libs.auth.permissions import Permission

            if Permission.PREDICTIONS_REQUEST not in self._authz.grants(principal, use_case):
                raise OipError(grpc.StatusCode.PERMISSION_DENIED, "permission denied")


@dataclass
class OipStats:
    requests: int = 0
    failed: int = 0
    rows: int = 0


class OipServicer:
    def __init__(self, models: ModelManager, triton: Triton, predlog: PredictionLog | None,
                 auth: OipAuth | None = None) -> None:
        self._models = models
        self._served = models.served  # the dict the manager replaces entries of
        self._triton = triton
        self._predlog = predlog
        self._auth = auth
        self._shadows: set[asyncio.Task[None]] = set()
        self.stats = OipStats()

    # -- registration -------------------------------------------------------------------

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        def unary(fn: Callable[..., Any], req: Any, resp: Any = None) -> grpc.RpcMethodHandler:
            async def parsed(request: bytes, context: grpc.aio.ServicerContext) -> Any:
                # Parsed here, not by gRPC: a bad request answers INVALID_ARGUMENT, not UNKNOWN.
                try:
                    message = req.FromString(request)
                except DecodeError:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a {req.DESCRIPTOR.name}")
                return await fn(message, context)

            return grpc.unary_unary_rpc_method_handler(
                parsed if req else fn, response_serializer=resp.SerializeToString if resp else None)

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
            "ModelStatistics": unary(self.model_statistics, p.ModelStatisticsRequest, p.ModelStatisticsResponse),
            "RepositoryIndex": unary(self.repository_index, p.RepositoryIndexRequest, p.RepositoryIndexResponse),
        }
        for name, why in _UNIMPLEMENTED.items():
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

    async def model_infer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            return await self._infer(request, context)
        except OipError as exc:
            self.stats.failed += 1
            await context.abort(exc.code, exc.message)
            raise  # unreachable: abort raises

    async def model_stream_infer(self, requests: AsyncIterator[bytes],
                                 context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Each request is answered on the stream as it completes (errors in ``error_message``)."""
        replies: asyncio.Queue[bytes | None] = asyncio.Queue()
        pending = 0

        async def one(request: bytes) -> None:
            try:
                reply = _field(_STREAM_RESPONSE_TAG, await self._infer(request, context))
            except OipError as exc:
                self.stats.failed += 1
                reply = service_pb2.ModelStreamInferResponse(error_message=exc.message).SerializeToString()
            await replies.put(reply)

        async def read() -> None:
            nonlocal pending
            tasks = []
            async for request in requests:
                pending += 1
                tasks.append(asyncio.get_running_loop().create_task(one(request)))
            await asyncio.gather(*tasks)
            await replies.put(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (reply := await replies.get()) is not None:
                yield reply
        finally:
            reader.cancel()

    async def _infer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.perf_counter_ns()
        self.stats.requests += 1
        try:
            msg = service_pb2.ModelInferRequest.FromString(request)
        except DecodeError:
            raise OipError(grpc.StatusCode.INVALID_ARGUMENT, "not a ModelInferRequest") from None
        name = msg.model_name
        served = self._known(name, context, "ModelInfer")
        routing = served.routing
        if routing is None:
            raise OipError(grpc.StatusCode.NOT_FOUND, f"model {name!r} has no champion being served")
        width = served.schema.width
        rows, mergeable = _validate(msg, width)
        pinned = msg.model_version
        if pinned:
            if not pinned.isdigit() or int(pinned) not in routing.versions:
                raise OipError(grpc.StatusCode.NOT_FOUND,
                               f"model {name!r} version {pinned} is not served (serving {sorted(routing.versions)})")
            route = Route(int(pinned), "pinned")
        elif routing.challenger:
            key = msg.parameters["entity_id"].string_param if "entity_id" in msg.parameters else msg.id
            route = routing.route(key or None)
        else:
            route = Route(routing.champion, "champion")
        pid = msg.id
        forward = request if pinned else request + _field(_VERSION_TAG, str(route.version).encode())
        if not pid:
            pid = prediction_id()
            forward += _field(_ID_TAG, pid.encode())
        reply, version = await self._call(served, route, forward, msg, rows, mergeable, pid)
        self.stats.rows += rows
        if self._predlog is not None:
            latency = (time.perf_counter_ns() - started) // 1000
            ids = [pid] if rows == 1 else [f"{pid}/{i}" for i in range(rows)]
            data = _rows_bytes(msg)
            traceparent = _traceparent(context.invocation_metadata())
            trace = traceparent[3:35]
            self._predlog.offer(LogEntry(name, served.model, version, route.alias, ids, (), data, None,
                                         latency, trace, oip_response=reply, traceparent=traceparent))
            if route.shadow_version:
                self._shadow(served, route.shadow_version, data, rows, ids, traceparent)
        return reply

    async def _call(self, served: Served, route: Route, forward: bytes, msg: Any, rows: int,
                    mergeable: bool, pid: str) -> tuple[bytes, int]:
        version = route.version
        key = (served.use_case, version)
        inflight = self._models.inflight
        inflight[key] += 1
        try:
            if mergeable:
                item = Rows(msg.raw_input_contents[0], rows, forward, pid)
                reply = await self._triton.submit(served.model, str(version), item, served.schema.width,
                                                  served.max_batch)
                return reply, version
            return await self._triton.infer_raw(forward, served.model), version
        except TritonUnavailable as exc:
            raise OipError(grpc.StatusCode.UNAVAILABLE, exc.message) from None
        except grpc.aio.AioRpcError as exc:
            current = self._models.get(served.use_case).routing
            if (route.alias != "pinned" and exc.code() in _RETRY_CODES and current is not None
                    and version not in current.versions):
                # Retired while on its way: the champion of now answers instead.
                retry = Route(current.champion, "champion")
                forward = forward + _field(_VERSION_TAG, str(retry.version).encode())
                return await self._call(served, retry, forward, msg, rows, mergeable, pid)
            raise OipError(exc.code(), exc.details() or exc.code().name) from None
        finally:
            inflight[key] -= 1

    def _shadow(self, served: Served, version: int, data: bytes, rows: int, ids: list[str],
                traceparent: str) -> None:
        async def run() -> None:
            started = time.perf_counter_ns()
            try:
                reply = await self._triton.submit(served.model, str(version), Rows(data, rows), served.schema.width,
                                                  served.max_batch)
            except Exception as exc:  # noqa: BLE001 - a shadow never affects the caller
                log.debug("shadow v%d of %s failed: %s", version, served.use_case, exc)
                return
            if self._predlog is not None:
                self._predlog.offer(LogEntry(served.use_case, served.model, version, CHALLENGER, ids, (), data,
                                             reply.values, (time.perf_counter_ns() - started) // 1000,
                                             traceparent[3:35], shadow=True, traceparent=traceparent))

        task = asyncio.get_running_loop().create_task(run())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    # -- the rest of the protocol -------------------------------------------------------

    def _known(self, name: str, context: grpc.aio.ServicerContext, method: str = "ModelMetadata") -> Served:
        """The served model ``name``, for a caller allowed to request its predictions.
        Credentials first: a caller without them learns nothing, not even which models exist."""
        principal = self._auth.authenticate(method, context.invocation_metadata()) if self._auth else None
        served = self._served.get(name)
        if served is None:
            raise OipError(grpc.StatusCode.NOT_FOUND, f"unknown model {name!r}")
        if self._auth is not None and principal is not None:
            self._auth.authorize(principal, name)
        return served

    async def _guard(self, context: grpc.aio.ServicerContext, fn: Callable[[], Any]) -> Any:
        try:
            return await fn()
        except OipError as exc:
            await context.abort(exc.code, exc.message)
        except TritonUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, exc.message)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")

    async def server_live(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ready = self._triton.up and all(
            s.routing is not None or self._models.desired(s.use_case) is None for s in self._served.values())
        return service_pb2.ServerReadyResponse(ready=ready)

    def _version(self, served: Served, version: str) -> str:
        routing = served.routing
        if routing is None:
            raise OipError(grpc.StatusCode.NOT_FOUND, f"model {served.use_case!r} has no champion being served")
        if version and (not version.isdigit() or int(version) not in routing.versions):
            raise OipError(grpc.StatusCode.NOT_FOUND, f"model {served.use_case!r} version {version} is not served")
        return version or str(routing.champion)

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
                name="aifactory-gateway", version=triton.version,
                extensions=[e for e in triton.extensions if e not in _UNSERVED_EXTENSIONS])

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
                kept = [s for s in stats.model_stats if s.name in self._served]
                del stats.model_stats[:]
                stats.model_stats.extend(kept)
            return stats

        return await self._guard(context, run)

    async def repository_index(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def run() -> Any:
            if self._auth is not None:
                self._auth.check("RepositoryIndex", context.invocation_metadata(), None)
            index = service_pb2.RepositoryIndexResponse.FromString(
                await self._triton.forward("RepositoryIndex", request.SerializeToString()))
            kept = [m for m in index.models if m.name in self._served]
            del index.models[:]
            index.models.extend(kept)
            return index

        return await self._guard(context, run)

    async def close(self) -> None:
        if self._shadows:
            await asyncio.wait(list(self._shadows), timeout=5)


def _validate(msg: Any, width: int) -> tuple[int, bool]:
    """Rows of the request, and whether its rows may be coalesced with others'."""
    inputs = msg.inputs
    if len(inputs) != 1:
        raise OipError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"model {msg.model_name!r} takes one input {INPUT!r}, got {len(inputs)}")
    tensor = inputs[0]
    if tensor.name != INPUT:
        raise OipError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"input {tensor.name!r}: unknown, model {msg.model_name!r} takes {INPUT!r}")
    if tensor.datatype != "FP32":
        raise OipError(grpc.StatusCode.INVALID_ARGUMENT, f"input {INPUT!r}: datatype {tensor.datatype}, expected FP32")
    shape = tensor.shape
    if len(shape) != 2 or shape[1] != width or shape[0] < 1:
        raise OipError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"input {INPUT!r}: shape {list(shape)}, expected [-1, {width}]")
    rows = shape[0]
    raw = msg.raw_input_contents
    if raw:
        if len(raw) != 1 or len(raw[0]) != rows * width * 4:
            raise OipError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {INPUT!r}: {sum(len(r) for r in raw)} bytes of data, expected {rows * width * 4} "
                           f"for shape [{rows}, {width}]")
        mergeable = not msg.parameters or (len(msg.parameters) == 1 and "entity_id" in msg.parameters)
        if mergeable and msg.outputs:
            mergeable = all(o.name == "OUTPUT" and not o.parameters for o in msg.outputs)
        return rows, mergeable
    if len(tensor.contents.fp32_contents) != rows * width:
        raise OipError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"input {INPUT!r}: {len(tensor.contents.fp32_contents)} values, expected {rows * width}")
    return rows, False


def _rows_bytes(msg: Any) -> bytes:
    """The request's INPUT rows as raw FP32 bytes (validated before)."""
    if msg.raw_input_contents:
        return msg.raw_input_contents[0]  # type: ignore[no-any-return]
    import numpy as np

    return np.asarray(msg.inputs[0].contents.fp32_contents, dtype=np.float32).tobytes()


def _traceparent(metadata: Any) -> str:
    """The caller's W3C trace context ("00-<32 hex trace id>-<span id>-<flags>"), or ""."""
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str) and len(value) == 55:
            return value
    return ""
