"""The gateway's one data plane: route → version → Triton → retry → shadow → log.

Both transports hand every inference to :class:`DataPlane`, as KServe's servicers do:
the business API with features (:meth:`DataPlane.predict`: fetched by entity id and/or
inline, made into rows, scored), the Open Inference Protocol with the caller's encoded
request (:meth:`DataPlane.infer`: forwarded as bytes, Triton's reply returned as bytes,
no tensor decoded or re-encoded). Each then goes the same way:

- route: the served plan's champion, canary (sticky by entity) or shadow; an OIP
  request may pin a served version instead;
- call Triton with the version counted in flight (a promotion waits for those calls
  before Triton unloads a retired version); a call that fails because its version was
  retired while it was on its way is tried once on the champion of now;
- log the prediction (off the reply path), and score the shadow version in the
  background, its answer logged with ``shadow=true`` and never returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import grpc
import numpy as np
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from libs.errors import AifError, InvalidArgument, NotFound, StatusError
from services.gateway.features import FeatureRow, FeatureSource
from services.gateway.feedback import RecentPredictions
from services.gateway.ids import prediction_id
from services.gateway.inputs import Input, InputSchema
from services.gateway.models import ModelManager, Served
from services.gateway.oip import (
    ID_TAG,
    VERSION_TAG,
    encode_field,
    parse_version,
    routing_key,
    rows_bytes,
    validate,
)
from services.gateway.predlog import PredictionLog
from services.gateway.predlog import Served as LogEntry
from services.gateway.routing import CHALLENGER, CHAMPION, PINNED, Route, Routing
from services.gateway.triton import Output, Rows, Triton, rpc_error

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("aifactory.gateway")
_untraced = contextlib.nullcontext()


def _triton_span(served: Served) -> dict[str, str]:
    return {
        "rpc.system": "grpc",
        "rpc.service": "inference.GRPCInferenceService",
        "rpc.method": "ModelInfer",
        "aif.model": served.model,
    }


MAX_BATCH = 4096  # business inputs per PredictBatch
# A call that failed on a version the routing has just retired is tried again once.
_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Scored:
    prediction_id: str
    version: int
    alias: str
    output: np.ndarray  # this row's OUTPUT values


@dataclass(frozen=True, slots=True)
class Predictions:
    """A business request's answers in input order: a :class:`Scored`, or (batch only) the
    input's error as ``"<CODE>: <message>"``."""

    use_case: str
    model: str
    schema: InputSchema
    results: list[Scored | str]


class DataPlane:
    def __init__(
        self,
        models: ModelManager,
        triton: Triton,
        features: FeatureSource,
        predlog: PredictionLog | None,
        recent: RecentPredictions,
        *,
        log_oip: bool = True,
    ) -> None:
        self._models = models
        self._triton = triton
        self._features = features
        self._predlog = predlog
        self._oip_log = predlog if log_oip else None
        self._recent = recent
        self._shadows: set[asyncio.Task[None]] = set()
        self.shadow_failures = 0

    # -- the business API ---------------------------------------------------------------

    async def predict(
        self, use_case: str, inputs: Sequence[Input], traceparent: str = "", *, batch: bool
    ) -> Predictions:
        """Features → rows → :meth:`score`. A bad input fails the call, or in a ``batch``
        only its own answer (named ``inputs[i].…``)."""
        if batch and not inputs:
            raise InvalidArgument("inputs", "at least one input")
        if len(inputs) > MAX_BATCH:
            raise InvalidArgument("inputs", f"at most {MAX_BATCH} inputs per call, got {len(inputs)}")
        served, _ = self._models.routing(use_case)  # NOT_FOUND before any work
        schema = served.schema
        fetched = await self._fetch(use_case, schema, inputs)
        rows: list[np.ndarray] = []
        errors: dict[int, str] = {}
        for i, item in enumerate(inputs):
            where = f"inputs[{i}]." if batch else ""
            try:
                rows.append(self._row(use_case, schema, item, fetched, where))
            except AifError as exc:
                if not batch:
                    raise
                errors[i] = f"{exc.code.name}: {exc.message}"
        scored: list[Scored] = []
        if rows:
            entities = [item.entity_id for i, item in enumerate(inputs) if i not in errors]
            scored = await self.score(use_case, np.stack(rows), entities, traceparent)
        answers = iter(scored)
        results = [errors[i] if i in errors else next(answers) for i in range(len(inputs))]
        return Predictions(use_case, served.model, schema, results)

    @staticmethod
    def _row(
        use_case: str, schema: InputSchema, item: Input, fetched: Mapping[str, FeatureRow | None], where: str
    ) -> np.ndarray:
        online = None
        if item.entity_id and item.entity_id in fetched:
            online = fetched[item.entity_id]
            if online is None and not item.features:
                raise NotFound(f"{where}entity_id: no online features for {item.entity_id!r} in {use_case}")
        elif not item.entity_id and not item.features:
            raise InvalidArgument(f"{where}entity_id", "give an entity id or inline features")
        return schema.row(schema.merge(online, item.features), field=f"{where}features")

    async def _fetch(
        self, use_case: str, schema: InputSchema, inputs: Sequence[Input]
    ) -> Mapping[str, FeatureRow | None]:
        """Online features of the entities whose inline features are not complete."""
        ids = list(
            dict.fromkeys(i.entity_id for i in inputs if i.entity_id and not schema.complete(i.features))
        )
        if not ids:
            return {}
        return dict(zip(ids, await self._features.fetch(use_case, ids), strict=True))

    async def score(
        self, use_case: str, rows: np.ndarray, entity_ids: Sequence[str], traceparent: str = ""
    ) -> list[Scored]:
        """Scores ``rows`` (float32 [n, width]); ``entity_ids[i]`` ("" if none) routes row i."""
        started = time.perf_counter_ns()
        at = time.time()
        served, routing = self._models.routing(use_case)
        groups: dict[Route, list[int]] = {}
        for i, entity in enumerate(entity_ids):
            groups.setdefault(routing.route(entity or None), []).append(i)
        ids = [prediction_id() for _ in entity_ids]
        try:
            # A traced request (the business API) shows its Triton call as a span of its own.
            with (
                _tracer.start_as_current_span(
                    "triton ModelInfer", kind=SpanKind.CLIENT, attributes=_triton_span(served)
                )
                if trace.get_current_span().is_recording()
                else _untraced
            ):
                parts = await self._route_calls(served, groups, rows)
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, "features") from None
        results: list[Scored | None] = [None] * len(entity_ids)
        for (route, idx), (output, version, alias) in zip(groups.items(), parts, strict=True):
            for k, i in enumerate(idx):
                results[i] = Scored(ids[i], version, alias, output.values[k])
            whole = len(idx) == len(ids)  # one route covers every row: no copies
            self._logged(
                self._predlog,
                served,
                version,
                alias,
                ids if whole else [ids[i] for i in idx],
                entity_ids if whole else [entity_ids[i] for i in idx],
                rows if whole else rows[idx],
                output.values,
                None,
                started,
                traceparent,
                at,
                route.shadow_version,
            )
        for pid, entity in zip(ids, entity_ids, strict=True):
            self._recent.add(pid, use_case, entity, at)
        return [r for r in results if r is not None]

    async def _route_calls(
        self, served: Served, groups: Mapping[Route, list[int]], rows: np.ndarray
    ) -> list[tuple[Output, int, str]]:
        if len(groups) == 1:  # the usual case: awaited in place, no task per call
            (route,) = groups
            return [await self._call(served, route, partial(self._rows, served, rows))]
        return list(
            await asyncio.gather(
                *(
                    self._call(served, route, partial(self._rows, served, rows[idx]))
                    for route, idx in groups.items()
                )
            )
        )

    async def _rows(self, served: Served, rows: np.ndarray, version: int) -> Output:
        """One Triton call per ``max_batch`` rows (all at once, coalesced with others' rows)."""
        data = np.ascontiguousarray(rows, dtype=np.float32)
        step = served.max_batch
        calls = [
            self._triton.submit(
                served.model, str(version), Rows(chunk.tobytes(), len(chunk)), served.schema.width, step
            )
            for chunk in (data[i : i + step] for i in range(0, len(data), step))
        ]
        # One call (the usual case) is awaited in place: gather would make a task of it.
        parts = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        if len(parts) == 1:
            return parts[0]  # type: ignore[no-any-return]
        return Output(np.concatenate([p.values for p in parts]), parts[0].model_version)

    # -- the Open Inference Protocol ----------------------------------------------------

    async def infer(self, served: Served, msg: Any, request: bytes, traceparent: str = "") -> bytes:
        """One ``ModelInfer``: ``msg`` is ``request`` parsed. The caller's bytes go to Triton
        with the routed version (and a prediction id when it sent none) appended."""
        started = time.perf_counter_ns()
        routing = served.routing
        if routing is None:
            raise NotFound(f"model {served.use_case!r} has no champion being served")
        rows, mergeable = validate(msg, served.schema.width)
        pinned = msg.model_version
        if pinned:
            route = self._pinned(served, routing, pinned)
        elif routing.challenger:
            route = routing.route(routing_key(msg) or None)
        else:  # the usual case, without a call
            route = Route(routing.champion, CHAMPION)
        pid = msg.id
        if not pid:
            pid = prediction_id()
            request += encode_field(ID_TAG, pid.encode())
        data = msg.raw_input_contents[0] if mergeable else None
        try:
            reply, version, alias = await self._call(
                served, route, partial(self._forward, served, request, not pinned, data, rows, pid)
            )
        except grpc.aio.AioRpcError as exc:  # Triton's own error, passed on with its code
            raise StatusError(exc.code(), exc.details() or exc.code().name) from None
        if self._oip_log is not None:
            ids = [pid] if rows == 1 else [f"{pid}/{i}" for i in range(rows)]
            self._logged(
                self._oip_log,
                served,
                version,
                alias,
                ids,
                (),
                rows_bytes(msg),
                None,
                reply,
                started,
                traceparent,
                time.time(),
                route.shadow_version,
            )
        return reply

    @staticmethod
    def _pinned(served: Served, routing: Routing, pinned: str) -> Route:
        version = parse_version(pinned)
        if version is None or version not in routing.versions:
            raise NotFound(
                f"model {served.use_case!r} version {pinned} is not served "
                f"(serving {sorted(routing.versions)})"
            )
        return Route(version, PINNED)

    def _forward(
        self,
        served: Served,
        request: bytes,
        versioned: bool,
        data: bytes | None,
        rows: int,
        pid: str,
        version: int,
    ) -> Awaitable[bytes]:
        if versioned:
            request += encode_field(VERSION_TAG, str(version).encode())
        if data is not None:  # rows that may be coalesced with other requests' rows
            return self._triton.submit(
                served.model,
                str(version),
                Rows(data, rows, request, pid),
                served.schema.width,
                served.max_batch,
            )  # type: ignore[no-any-return]
        return self._triton.infer_raw(request, served.model)

    # -- shared -------------------------------------------------------------------------

    async def _call(
        self, served: Served, route: Route, send: Callable[[int], Awaitable[T]]
    ) -> tuple[T, int, str]:
        """``send(version)`` on the route's version, counted in flight; the answer, with the
        version and alias that gave it. Raises Triton's errors as they came."""
        version, alias = route.version, route.alias
        inflight = self._models.inflight
        for attempt in (1, 2):
            key = (served.use_case, version)
            inflight[key] += 1
            try:
                return await send(version), version, alias
            except grpc.aio.AioRpcError as exc:
                current = self._models.get(served.use_case).routing
                if (
                    attempt == 2
                    or alias == PINNED
                    or exc.code() not in _RETRY_CODES
                    or current is None
                    or version in current.versions
                ):
                    raise
                # The version was retired while this call was on its way: ask the champion of now.
                version, alias = current.champion, CHAMPION
            finally:
                inflight[key] -= 1
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _logged(
        self,
        predlog: PredictionLog | None,
        served: Served,
        version: int,
        alias: str,
        ids: list[str],
        entities: Sequence[str],
        inputs: np.ndarray | bytes,
        outputs: np.ndarray | None,
        oip_response: bytes | None,
        started: int,
        traceparent: str,
        at: float,
        shadow: int,
    ) -> None:
        """Logs a served call; starts its shadow call (whose only effect is its log entry)."""
        if predlog is None:
            return
        latency_us = (time.perf_counter_ns() - started) // 1000
        predlog.offer(
            LogEntry(
                served.use_case,
                served.model,
                version,
                alias,
                ids,
                entities,
                inputs,
                outputs,
                latency_us,
                traceparent[3:35],
                oip_response=oip_response,
                traceparent=traceparent,
                at=at,
            )
        )
        if shadow:
            self._shadow(predlog, served, shadow, inputs, ids, entities, traceparent, at)

    def _shadow(
        self,
        predlog: PredictionLog,
        served: Served,
        version: int,
        inputs: np.ndarray | bytes,
        ids: list[str],
        entities: Sequence[str],
        traceparent: str,
        at: float,
    ) -> None:
        rows = (
            inputs
            if isinstance(inputs, np.ndarray)
            else np.frombuffer(inputs, dtype=np.float32).reshape(len(ids), served.schema.width)
        )

        async def run() -> None:
            started = time.perf_counter_ns()
            try:
                # Pinned: a shadow call that fails is not tried on another version.
                output, _, _ = await self._call(
                    served, Route(version, PINNED), partial(self._rows, served, rows)
                )
            except Exception as exc:  # noqa: BLE001 - a shadow never affects the caller
                self.shadow_failures += 1
                log.debug("shadow v%d of %s failed: %s", version, served.use_case, exc)
                return
            predlog.offer(
                LogEntry(
                    served.use_case,
                    served.model,
                    version,
                    CHALLENGER,
                    ids,
                    entities,
                    inputs,
                    output.values,
                    (time.perf_counter_ns() - started) // 1000,
                    traceparent[3:35],
                    shadow=True,
                    at=at,
                    traceparent=traceparent,
                )
            )

        task = asyncio.get_running_loop().create_task(run())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def close(self) -> None:
        """Let running shadow calls finish (their answers are logged)."""
        if self._shadows:
            await asyncio.wait(list(self._shadows), timeout=5)
