"""Scores input rows of a use case: routes them, calls Triton, logs them, runs the shadow.

Shared by the business API; the OIP pass-through has its own byte-level path in
:mod:`services.gateway.oip`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from libs.errors import AifError
from services.gateway.feedback import RecentPredictions
from services.gateway.ids import prediction_id
from services.gateway.models import ModelManager, Served
from services.gateway.predlog import PredictionLog
from services.gateway.predlog import Served as LogEntry
from services.gateway.routing import Route
from services.gateway.triton import Output, Rows, Triton, rpc_error

log = logging.getLogger(__name__)

# A call that failed on a version the routing has just retired is tried again once.
_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND)


@dataclass(frozen=True, slots=True)
class Scored:
    prediction_id: str
    version: int
    alias: str
    output: np.ndarray  # this row's OUTPUT values


class Scorer:
    def __init__(self, models: ModelManager, triton: Triton, predlog: PredictionLog | None,
                 recent: RecentPredictions) -> None:
        self._models = models
        self._triton = triton
        self._predlog = predlog
        self._recent = recent
        self._shadows: set[asyncio.Task[None]] = set()
        self.shadow_failures = 0

    async def score(self, use_case: str, rows: np.ndarray, entity_ids: Sequence[str],
                    traceparent: str = "") -> list[Scored]:
        """Scores ``rows`` (float32 [n, width]); ``entity_ids[i]`` ("" if none) routes row i."""
        started = time.perf_counter_ns()
        at = time.time()
        trace_id = traceparent[3:35]
        served, routing = self._models.routing(use_case)
        groups: dict[Route, list[int]] = {}
        for i, entity in enumerate(entity_ids):
            groups.setdefault(routing.route(entity or None), []).append(i)
        ids = [prediction_id() for _ in entity_ids]
        results: list[Scored | None] = [None] * len(entity_ids)
        if len(groups) == 1:  # the usual case: awaited in place, no task per call
            (route,) = groups
            parts = [await self._group(served, route, rows)]
        else:
            parts = await asyncio.gather(*(self._group(served, route, rows[idx]) for route, idx in groups.items()))
        latency_us = (time.perf_counter_ns() - started) // 1000
        for (route, idx), (version, alias, output) in zip(groups.items(), parts, strict=True):
            for k, i in enumerate(idx):
                results[i] = Scored(ids[i], version, alias, output.values[k])
            whole = len(idx) == len(ids)
            picked = ids if whole else [ids[i] for i in idx]
            entities = entity_ids if whole else [entity_ids[i] for i in idx]
            part = rows if whole else rows[idx]
            self._log(LogEntry(use_case, served.model, version, alias, picked, entities, part,
                               output.values, latency_us, trace_id, at=at, traceparent=traceparent))
            if route.shadow_version:
                self._shadow(served, route.shadow_version, part, picked, entities, traceparent, at)
        for pid, entity in zip(ids, entity_ids, strict=True):
            self._recent.add(pid, use_case, entity, at)
        return [r for r in results if r is not None]

    async def _group(self, served: Served, route: Route, rows: np.ndarray) -> tuple[int, str, Output]:
        version, alias = route.version, route.alias
        for attempt in (1, 2):
            try:
                return version, alias, await self._call(served, version, rows)
            except grpc.aio.AioRpcError as exc:
                current = self._models.get(served.use_case).routing
                if (attempt == 1 and exc.code() in _RETRY_CODES and current is not None
                        and version not in current.versions):
                    # The version was retired while this call was on its way: ask the new one.
                    version, alias = current.champion, "champion"
                    continue
                raise rpc_error(exc, "features") from None
        raise AifError("unreachable")

    async def _call(self, served: Served, version: int, rows: np.ndarray) -> Output:
        """One Triton call per ``max_batch`` rows (all at once, coalesced with others' rows)."""
        key = (served.use_case, version)
        inflight = self._models.inflight
        inflight[key] += 1
        try:
            data = np.ascontiguousarray(rows, dtype=np.float32)
            step = served.max_batch
            calls = [self._triton.submit(served.model, str(version), Rows(chunk.tobytes(), len(chunk)),
                                         served.schema.width, step)
                     for chunk in (data[i:i + step] for i in range(0, len(data), step))]
            # One call (the usual case) is awaited in place: gather would make a task of it.
            parts = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        finally:
            inflight[key] -= 1
        if len(parts) == 1:
            return parts[0]  # type: ignore[no-any-return]
        return Output(np.concatenate([p.values for p in parts]), parts[0].model_version)

    def _log(self, entry: LogEntry) -> None:
        if self._predlog is not None:
            self._predlog.offer(entry)

    def _shadow(self, served: Served, version: int, rows: np.ndarray, ids: list[str], entities: Sequence[str],
                traceparent: str, at: float) -> None:
        async def run() -> None:
            started = time.perf_counter_ns()
            try:
                output = await self._call(served, version, rows)
            except Exception as exc:  # noqa: BLE001 - a shadow never affects the caller
                self.shadow_failures += 1
                log.debug("shadow v%d of %s failed: %s", version, served.use_case, exc)
                return
            self._log(LogEntry(served.use_case, served.model, version, "challenger", ids, entities, rows,
                               output.values, (time.perf_counter_ns() - started) // 1000, traceparent[3:35],
                               shadow=True, at=at, traceparent=traceparent))

        task = asyncio.get_running_loop().create_task(run())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def close(self) -> None:
        """Let running shadow calls finish (their answers are logged)."""
        if self._shadows:
            await asyncio.wait(list(self._shadows), timeout=5)
