"""gRPC servicer of the featurestore service: protobuf in and out, the core in between."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aifactory.featurestore.v1 import featurestore_service_pb2 as pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc
from libs.errors import InvalidArgument
from libs.rpc import current_principal
from services.featurestore import convert
from services.featurestore.core import FeatureStoreCore

log = logging.getLogger(__name__)

MAX_ENTITIES = 10_000


class FeatureStoreServicer(featurestore_service_pb2_grpc.FeatureStoreServiceServicer):
    def __init__(self, core: FeatureStoreCore) -> None:
        self._core = core

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
        start, end = convert.time_range(request, uc)
        who = current_principal.get()
        log.info(
            "training set for %s [%s, %s) requested by %s",
            uc.name,
            start.isoformat(),
            end.isoformat(),
            getattr(who, "subject", "?"),
        )
        ts = await asyncio.to_thread(
            self._core.training_set, uc.name, start, end, list(request.feature_names)
        )
        return convert.training_set_reply(uc, ts)
