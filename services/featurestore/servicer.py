"""gRPC servicer of the featurestore service: protobuf in and out, the core in between."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aifactory.featurestore.v1 import featurestore_service_pb2 as pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc
from libs.errors import InvalidArgument
from libs.lifecycle import wire
from libs.rpc import current_principal
from libs.usecase import UseCase
from services.featurestore import convert
from services.featurestore.core import FeatureStoreCore
from services.featurestore.training import TrainingSet

log = logging.getLogger(__name__)

MAX_ENTITIES = 10_000


class FeatureStoreServicer(featurestore_service_pb2_grpc.FeatureStoreServiceServicer):
    def __init__(self, core: FeatureStoreCore, *, batch_bytes: int = wire.BATCH_BYTES) -> None:
        self._core = core
        # Size a streamed training set's batch messages aim at.
        self._batch_bytes = batch_bytes

    async def GetOnlineFeatures(
        self, request: pb.GetOnlineFeaturesRequest, context: Any
    ) -> pb.GetOnlineFeaturesResponse:
        ids = list(request.entity_ids)
        if len(ids) > MAX_ENTITIES:
            raise InvalidArgument("entity_ids", f"at most {MAX_ENTITIES} entities per call, got {len(ids)}")
        for i, e in enumerate(ids):
            if not e:
                raise InvalidArgument(f"entity_ids[{i}]", "empty entity id")
        uc, columns, rows = await asyncio.to_thread(
            self._core.online, request.use_case, ids, list(request.feature_names)
        )
        return convert.online_reply(uc, columns, rows)

    async def GetTrainingSet(
        self, request: pb.GetTrainingSetRequest, context: Any
    ) -> pb.GetTrainingSetResponse:
        uc = self._core.usecases.require(request.use_case)
        ts = await self._build(request, uc)
        return convert.training_set_reply(uc, ts)

    async def StreamTrainingSet(
        self, request: pb.StreamTrainingSetRequest, context: Any
    ) -> AsyncIterator[pb.StreamTrainingSetResponse]:
        """The header, then the set's rows read a batch at a time from its parquet file
        (the next batch is read while the current one is sent)."""
        uc = self._core.usecases.require(request.use_case)
        ts = await self._build(request, uc)
        schema = await asyncio.to_thread(wire.parquet_schema, ts.path)
        yield convert.training_set_header(uc, ts, wire.schema_message(schema))
        batches = _Batches(wire.parquet_batches(ts.path, target_bytes=self._batch_bytes))
        try:
            pending = asyncio.ensure_future(asyncio.to_thread(batches.next))
            while (message := await pending) is not None:
                pending = asyncio.ensure_future(asyncio.to_thread(batches.next))
                yield convert.training_set_batch(message)
        finally:
            # A stream ended early (the client went away) closes its file once the read
            # in flight, if any, has returned.
            await asyncio.to_thread(batches.close)

    async def _build(
        self, request: pb.GetTrainingSetRequest | pb.StreamTrainingSetRequest, uc: UseCase
    ) -> TrainingSet:
        start, end = convert.time_range(request, uc)
        who = current_principal.get()
        log.info(
            "training set for %s [%s, %s) requested by %s",
            uc.name,
            start.isoformat(),
            end.isoformat(),
            getattr(who, "subject", "?"),
        )
        return await asyncio.to_thread(
            self._core.training_set, uc.name, start, end, list(request.feature_names)
        )


class _Batches:
    """A batch iterator read from worker threads, one call at a time."""

    def __init__(self, batches: Iterator[bytes]) -> None:
        self._batches = batches
        self._lock = threading.Lock()
        self._closed = False

    def next(self) -> bytes | None:
        with self._lock:
            return None if self._closed else next(self._batches, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            close = getattr(self._batches, "close", None)
            if close is not None:
                close()
