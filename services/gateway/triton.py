"""One persistent gRPC channel to Triton: byte-level pass-through, row coalescing,
model control, and a circuit that turns a down Triton into an immediate UNAVAILABLE.

Requests travel as bytes (identity serializers): the Open Inference Protocol path
forwards the caller's own encoded request, so nothing is decoded and re-encoded on
the way unless rows are coalesced.

Coalescing: while ``coalesce_inflight`` calls to one model version are in flight,
further rows wait in a queue and go together in the next call, as soon as one
returns. At concurrency 1 nothing ever waits (no added latency); under load, N
requests cost one Triton call instead of N.

Circuit: a failed call with UNAVAILABLE or DEADLINE_EXCEEDED triggers a probe
(``ServerLive`` with a short deadline). When the probe fails, the circuit opens:
every call fails at once with UNAVAILABLE, and the probe repeats every
``health_interval_s``; when Triton answers again, the recovery hooks run (the model
manager loads the models back: a restarted Triton has none) and the circuit closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

from libs.errors import AifError, InvalidArgument, Unavailable
from services.gateway.oip import parse_version

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
INFER = f"/{SERVICE}/ModelInfer"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
LOAD_MESSAGE_BYTES = 2**31 - 1

_DOWN_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

# Triton's restricted protocol (``--grpc-restricted-protocol=<groups>:<key>=<value>``)
# checks the header "triton-grpc-protocol-<key>"; aif.infra starts Triton with this key.
TRITON_CONTROL_HEADER = "aif-control"
CONTROL_METADATA_KEY = f"triton-grpc-protocol-{TRITON_CONTROL_HEADER}"


class TritonUnavailable(Unavailable):
    def __init__(self, detail: str = "") -> None:
        super().__init__("triton unavailable" + (f": {detail}" if detail else ""))


@dataclass(slots=True)
class Rows:
    """Rows for one call: raw FP32 row-major bytes, and, for a forwarded OIP request,
    its original bytes (sent as they are when the rows travel alone)."""

    data: bytes
    rows: int
    request: bytes | None = None
    request_id: str = ""
    future: asyncio.Future[Any] | None = None


@dataclass(slots=True)
class _Lane:
    inflight: int = 0
    queue: deque[Rows] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class Output:
    """The first output tensor of a business call: float32 ``[rows, width]``."""

    values: np.ndarray
    model_version: str


def rpc_error(exc: grpc.aio.AioRpcError, what: str) -> AifError:
    """A Triton status as a typed error of the business API."""
    code, detail = exc.code(), exc.details() or ""
    if code in _DOWN_CODES:
        return TritonUnavailable(detail)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(what, detail)
    if code is grpc.StatusCode.NOT_FOUND:
        # The gateway knows the model but Triton does not have it: not the caller's fault.
        return Unavailable(f"model not available in triton: {detail}")
    err = AifError(f"triton: {code.name}: {detail}")
    return err


class Triton:
    def __init__(
        self,
        url: str,
        *,
        infer_timeout_s: float = 2.0,
        health_interval_s: float = 0.1,
        coalesce_inflight: int = 1,
        coalesce_max_rows: int = 256,
        input_name: str = "INPUT",
        control_key: str = "",
    ) -> None:
        self.url = url
        # Sent with every call but inference (model control, config, metadata, statistics):
        # Triton refuses those without it. Inference is not restricted (the hot path carries
        # no extra header); Triton is reachable by the gateway alone.
        self._control: tuple[tuple[str, str], ...] | None = (
            ((CONTROL_METADATA_KEY, control_key),) if control_key else None
        )
        self._timeout = infer_timeout_s
        self._interval = health_interval_s
        self._limit = coalesce_inflight
        self._max_rows = coalesce_max_rows
        self._input = input_name
        self._channel = grpc.aio.insecure_channel(
            url,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                # A load call carries the files of every version it serves (weights included).
                ("grpc.max_send_message_length", LOAD_MESSAGE_BYTES),
                # Reconnect quickly once Triton is back (gRPC's default backoff reaches 120 s).
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 500),
                ("grpc.enable_retries", 0),
            ],
        )
        self._infer = self._channel.unary_unary(INFER)
        self._unary: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self.up = True
        self._probe: asyncio.Task[None] | None = None
        self._recover_hooks: list[Callable[[], Awaitable[None]]] = []
        self._trouble_hooks: list[Callable[[str], Coroutine[Any, Any, None]]] = []
        self._closed = False
        self.calls = 0
        self.coalesced_rows = 0

    # -- plumbing -----------------------------------------------------------------------

    def on_recover(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` each time Triton answers again after an outage, before serving resumes."""
        self._recover_hooks.append(hook)

    def method(self, name: str) -> grpc.aio.UnaryUnaryMultiCallable:
        """A bytes-in, bytes-out callable for ``inference.GRPCInferenceService/<name>``."""
        call = self._unary.get(name)
        if call is None:
            call = self._unary[name] = self._channel.unary_unary(f"/{SERVICE}/{name}")
        return call

    async def call(self, name: str, request: Any, response_cls: Any, timeout: float = 5.0) -> Any:
        """A typed call for model control and readiness: not held back by the circuit
        (recovery itself uses it); raw gRPC errors."""
        raw = await self.method(name)(request.SerializeToString(), timeout=timeout, metadata=self._control)
        return response_cls.FromString(raw)

    async def forward(self, name: str, request: bytes, timeout: float | None = None) -> bytes:
        """Forwards an encoded request of method ``name`` (metadata, config, statistics)."""
        self.check()
        try:
            return await self.method(name)(  # type: ignore[no-any-return]
                request, timeout=timeout or self._timeout, metadata=self._control
            )
        except grpc.aio.AioRpcError as exc:
            self.failed(exc)
            raise

    def check(self) -> None:
        if not self.up:
            raise TritonUnavailable("circuit open")

    def on_model_trouble(self, hook: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        """Run ``hook(model)`` when a call to ``model`` failed while Triton itself is up."""
        self._trouble_hooks.append(hook)

    def failed(self, exc: grpc.aio.AioRpcError, model: str = "") -> None:
        """Called with every failed serving call: an outage-like status starts a probe."""
        code = exc.code()
        if self._closed:
            return
        if code in _DOWN_CODES and self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._watch(model))
        elif code is grpc.StatusCode.NOT_FOUND and model:
            self._trouble(model)

    def _trouble(self, model: str) -> None:
        for hook in self._trouble_hooks:
            asyncio.get_running_loop().create_task(hook(model))

    async def _live(self, timeout: float) -> bool:
        try:
            raw = await self.method("ServerLive")(
                service_pb2.ServerLiveRequest().SerializeToString(), timeout=timeout
            )
            return service_pb2.ServerLiveResponse.FromString(raw).live
        except grpc.aio.AioRpcError:
            return False

    async def _watch(self, model: str) -> None:
        try:
            if await self._live(min(0.25, self._interval * 2 + 0.05)):
                if model:
                    self._trouble(model)  # the failure was the model's, not the server's
                return
            self.up = False
            log.warning("triton at %s is down: circuit open", self.url)
            while not self._closed:
                await asyncio.sleep(self._interval)
                if await self._live(max(self._interval, 0.2)):
                    break
            for hook in self._recover_hooks:
                try:
                    await hook()
                except Exception:  # noqa: BLE001 - serving resumes; the hook logs and retries itself
                    log.exception("triton recovery hook failed")
            if not self._closed:
                self.up = True
                log.warning("triton at %s is back: circuit closed", self.url)
        finally:
            self._probe = None

    async def close(self) -> None:
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
        await self._channel.close()

    # -- inference ----------------------------------------------------------------------

    async def infer_raw(self, request: bytes, model: str = "", *, checked: bool = True) -> bytes:
        """One ModelInfer call with an encoded request; raw gRPC errors. ``checked=False``
        (warm-up) goes out even while the circuit is open."""
        if checked and not self.up:
            raise TritonUnavailable("circuit open")
        self.calls += 1
        try:
            return await self._infer(request, timeout=self._timeout)  # type: ignore[no-any-return]
        except grpc.aio.AioRpcError as exc:
            self.failed(exc, model)
            raise

    async def submit(self, model: str, version: str, item: Rows, width: int, max_rows: int = 0) -> Any:
        """Scores ``item`` on ``model`` ``version``: the OIP response bytes when ``item``
        carries a request, else an :class:`Output`. Coalesced calls stay within
        ``max_rows`` (the model's max batch). Raises raw gRPC errors."""
        lane = self._lanes.get((model, version))
        if lane is None:
            lane = self._lanes[(model, version)] = _Lane()
        if self._limit <= 0 or (lane.inflight < self._limit and not lane.queue):
            lane.inflight += 1
            try:
                return await self._one(model, version, item, width)
            finally:
                lane.inflight -= 1
                if lane.queue:
                    self._drain(model, version, lane, width, max_rows)
        item.future = asyncio.get_running_loop().create_future()
        lane.queue.append(item)
        return await item.future

    def _drain(self, model: str, version: str, lane: _Lane, width: int, max_rows: int) -> None:
        limit = min(self._max_rows, max_rows) if max_rows > 0 else self._max_rows
        while lane.queue and lane.inflight < max(self._limit, 1):
            batch: list[Rows] = []
            rows = 0
            while lane.queue and (not batch or rows + lane.queue[0].rows <= limit):
                item = lane.queue.popleft()
                batch.append(item)
                rows += item.rows
            lane.inflight += 1
            asyncio.get_running_loop().create_task(
                self._many(model, version, lane, batch, rows, width, max_rows)
            )

    async def _one(self, model: str, version: str, item: Rows, width: int) -> Any:
        if item.request is not None:
            return await self.infer_raw(item.request, model)
        raw = await self.infer_raw(
            encode_request(model, version, item.data, item.rows, width, self._input), model
        )
        return _first_output(raw, item.rows)

    async def _many(
        self, model: str, version: str, lane: _Lane, batch: list[Rows], rows: int, width: int, max_rows: int
    ) -> None:
        try:
            if len(batch) == 1:
                item = batch[0]
                try:
                    result = await self._one(model, version, item, width)
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                    _settle(item, exc=exc)
                else:
                    _settle(item, result)
                return
            self.coalesced_rows += rows
            data = b"".join(i.data for i in batch)
            try:
                raw = await self.infer_raw(
                    encode_request(model, version, data, rows, width, self._input), model
                )
                parts = _split(raw, [i.rows for i in batch])
            except BaseException as exc:  # noqa: BLE001
                for item in batch:
                    _settle(item, exc=exc)
                return
            response, outputs, chunks = parts
            for item, chunk in zip(batch, chunks, strict=True):
                if item.request is not None:
                    _settle(item, _oip_response(response, outputs, chunk, item.rows, item.request_id))
                else:
                    first = chunk[0]
                    values = np.frombuffer(first, dtype=np.float32).reshape(item.rows, -1)
                    _settle(item, Output(values, response.model_version))
        finally:
            lane.inflight -= 1
            if lane.queue:
                self._drain(model, version, lane, width, max_rows)

    # -- model control ------------------------------------------------------------------

    async def load(
        self,
        model: str,
        config: dict[str, Any] | None,
        timeout: float,
        files: Mapping[str, bytes] | None = None,
    ) -> None:
        """Triton's load call. ``files`` (``"file:<version>/<path>"`` → content, with a
        ``config``) become the model's folder, replacing what Triton had for it; without
        them Triton reads its own repository."""
        req = service_pb2.RepositoryModelLoadRequest(model_name=model)
        if config is not None:
            req.parameters["config"].string_param = json.dumps(config)
        for path, content in (files or {}).items():
            req.parameters[path].bytes_param = content
        await self.call("RepositoryModelLoad", req, service_pb2.RepositoryModelLoadResponse, timeout)

    async def unload(self, model: str) -> None:
        req = service_pb2.RepositoryModelUnloadRequest(model_name=model)
        await self.call("RepositoryModelUnload", req, service_pb2.RepositoryModelUnloadResponse)

    async def model_config(self, model: str) -> dict[str, Any]:
        from google.protobuf import json_format

        resp = await self.call(
            "ModelConfig", service_pb2.ModelConfigRequest(name=model), service_pb2.ModelConfigResponse
        )
        return json_format.MessageToDict(resp.config, preserving_proto_field_name=True)

    async def ready_versions(self, model: str) -> set[int]:
        """Versions of ``model`` ready to serve. Asked per model (its metadata lists the
        versions it has, each then asked for readiness), not from the repository index:
        the index lists the repository's folders, and a model loaded with its files in the
        load call has none."""
        try:
            meta = await self.call(
                "ModelMetadata",
                service_pb2.ModelMetadataRequest(name=model),
                service_pb2.ModelMetadataResponse,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:  # not loaded (no available version)
                return set()
            raise
        versions = [v for v in map(parse_version, meta.versions) if v is not None]
        ready = await asyncio.gather(*(self.model_ready(model, v) for v in versions))
        return {v for v, ok in zip(versions, ready, strict=True) if ok}

    async def model_ready(self, model: str, version: int, timeout: float = 1.0) -> bool:
        try:
            resp = await self.call(
                "ModelReady",
                service_pb2.ModelReadyRequest(name=model, version=str(version)),
                service_pb2.ModelReadyResponse,
                timeout,
            )
        except (grpc.aio.AioRpcError, TritonUnavailable):
            return False
        return bool(resp.ready)


def _settle(item: Rows, result: Any = None, exc: BaseException | None = None) -> None:
    fut = item.future
    if fut is None or fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def encode_request(
    model: str,
    version: str,
    data: bytes,
    rows: int,
    width: int,
    input_name: str = "INPUT",
    request_id: str = "",
) -> bytes:
    """A ModelInferRequest for ``rows`` FP32 rows of ``width`` columns (``data``, row-major)."""
    req = service_pb2.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    tensor = req.inputs.add()
    tensor.name = input_name
    tensor.datatype = "FP32"
    tensor.shape.extend((rows, width))
    req.raw_input_contents.append(data)
    return req.SerializeToString()


def _first_output(raw: bytes, rows: int) -> Output:
    resp = service_pb2.ModelInferResponse.FromString(raw)
    if not resp.raw_output_contents:
        raise AifError("triton answered without output")
    values = np.frombuffer(resp.raw_output_contents[0], dtype=np.float32).reshape(rows, -1)
    return Output(values, resp.model_version)


def _split(
    raw: bytes, sizes: list[int]
) -> tuple[service_pb2.ModelInferResponse, list[Any], list[list[bytes]]]:
    """Cuts a coalesced response into each caller's rows, for every output tensor."""
    resp = service_pb2.ModelInferResponse.FromString(raw)
    total = sum(sizes)
    outputs = list(resp.outputs)
    contents = list(resp.raw_output_contents)
    if len(contents) != len(outputs):
        raise AifError("triton answered without raw outputs")
    row_bytes = []
    for content in contents:
        if len(content) % total:
            raise AifError("triton output does not split into rows")
        row_bytes.append(len(content) // total)
    chunks: list[list[bytes]] = []
    offset = 0
    for n in sizes:
        chunks.append(
            [
                content[offset * rb : (offset + n) * rb]
                for content, rb in zip(contents, row_bytes, strict=True)
            ]
        )
        offset += n
    return resp, outputs, chunks


def _oip_response(
    resp: service_pb2.ModelInferResponse, outputs: list[Any], chunk: list[bytes], rows: int, request_id: str
) -> bytes:
    out = service_pb2.ModelInferResponse(
        model_name=resp.model_name, model_version=resp.model_version, id=request_id
    )
    for tensor in outputs:
        t = out.outputs.add()
        t.name = tensor.name
        t.datatype = tensor.datatype
        t.shape.extend((rows, *tensor.shape[1:]))
    out.raw_output_contents.extend(chunk)
    return out.SerializeToString()


def now_us() -> int:
    return time.perf_counter_ns() // 1000
