"""gRPC servicer of the featurestore service: protobuf in and out, the core in between."""
from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from google.protobuf.struct_pb2 import NULL_VALUE

from aifactory.common.v1 import common_pb2
from aifactory.featurestore.v1 import featurestore_service_pb2 as pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc
from libs.errors import InvalidArgument
from libs.features import feature_versions
from libs.rpc import current_principal
from services.featurestore.core import FeatureStoreCore

log = logging.getLogger(__name__)

MAX_ENTITIES = 10_000


def _value(number: float | None) -> common_pb2.Value:
    return common_pb2.Value(null_value=NULL_VALUE) if number is None else common_pb2.Value(double_value=number)


def _datetime(ts: Any) -> datetime:
    try:
        return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC)
    except (ValueError, OverflowError, OSError) as exc:  # outside what datetime can hold
        raise InvalidArgument("time_range", f"timestamp out of range: {exc}") from None


class FeatureStoreServicer(featurestore_service_pb2_grpc.FeatureStoreServiceServicer):
    def __init__(self, core: FeatureStoreCore) -> None:
        self._core = core

    async def GetOnlineFeatures(self, request: pb.GetOnlineFeaturesRequest, context: Any) -> pb.GetOnlineFeaturesResponse:
        ids = list(request.entity_ids)
        if len(ids) > MAX_ENTITIES:
            raise InvalidArgument("entity_ids", f"at most {MAX_ENTITIES} entities per call, got {len(ids)}")
        for i, e in enumerate(ids):
            if not e:
                raise InvalidArgument(f"entity_ids[{i}]", "empty entity id")
        uc, columns, rows = await asyncio.to_thread(self._core.online, request.use_case, ids,
                                                    list(request.feature_names))
        versions = feature_versions(uc)
        row_versions = {c: versions[c] for c in columns}
        reply = pb.GetOnlineFeaturesResponse(
            features=[common_pb2.FeatureRef(use_case=uc.name, feature_view=uc.name, name=c, version=versions[c])
                      for c in columns])
        for row in rows:
            out = reply.rows.add(entity_id=row.entity_id, found=row.found, record_id=row.record_id)
            for c in columns:
                out.values[c].CopyFrom(_value(row.values[c]))
            out.feature_versions.update(row_versions)
            if row.event_time_us is not None:
                out.event_time.FromMicroseconds(row.event_time_us)
        return reply

    async def GetTrainingSet(self, request: pb.GetTrainingSetRequest, context: Any) -> pb.GetTrainingSetResponse:
        uc = self._core.reader.usecase(request.use_case)
        tr = request.time_range
        end = _datetime(tr.end) if request.HasField("time_range") and tr.HasField("end") else datetime.now(UTC)
        try:
            start = (_datetime(tr.start) if request.HasField("time_range") and tr.HasField("start")
                     else end - uc.training.window)
        except OverflowError:  # an end near year 1 minus the training window
            raise InvalidArgument("time_range", "end is too early for the training window") from None
        if start >= end:
            raise InvalidArgument("time_range", f"start {start.isoformat()} is not before end {end.isoformat()}")
        who = current_principal.get()
        log.info("training set for %s [%s, %s) requested by %s", uc.name, start.isoformat(), end.isoformat(),
                 getattr(who, "subject", "?"))
        ts = await asyncio.to_thread(self._core.training_set, uc.name, start, end, list(request.feature_names))
        return pb.GetTrainingSetResponse(
            uri=ts.uri, format=ts.format, row_count=ts.row_count, content_hash=ts.content_hash, label=ts.label,
            datasets=[common_pb2.DatasetRef(use_case=uc.name, version=v, uri=u) for v, u in ts.datasets],
            features=[common_pb2.FeatureRef(use_case=uc.name, feature_view=c.view, name=c.name, version=c.version)
                      for c in ts.features])
