"""The bounded load: a producer and an app, each keeping its own ledger.

The producer sends loan applications (JSON) to the use case's raw topic; the app waits
until a record is online, asks the gateway for a decision by entity id and reports the
outcome through the gateway's feedback API, as a real app would, retrying a failed call
with backoff until it succeeds or a bounded time has passed. The ledger is what they
know was accepted: records the broker acknowledged, prediction ids the gateway
returned, feedback ids the gateway acknowledged. Failed attempts are counted by call
and status code: they are the requests that failed at the gateway.

Every record has an entity of its own, so "the online row of this entity shows this
record" is an exact check per record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import grpc
from aiokafka import AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp

from aif.datagen import Example, LoanStream, to_json
from aifactory.common.v1 import common_pb2
from aifactory.featurestore.v1 import featurestore_service_pb2 as fs_pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as fs_grpc
from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from libs.bus import topics
from libs.errors import Unavailable

USE_CASE = "loan_approval"
Metadata = tuple[tuple[str, str], ...]
T = TypeVar("T")

# Codes an app retries: the service is down or restarting, or not ready for this entity yet.
_RETRY = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
}


def _ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


@dataclass
class Ledger:
    """What the producer and the app know was accepted, by id."""

    records: dict[str, str] = field(default_factory=dict)  # record id → entity id
    predictions: dict[str, str] = field(default_factory=dict)  # prediction id → record id
    feedback: dict[str, str] = field(default_factory=dict)  # feedback id → prediction id
    failed: Counter[str] = field(default_factory=Counter)  # "Call CODE" → failed attempts
    gave_up: Counter[str] = field(default_factory=Counter)  # call → requests abandoned
    resent: int = 0  # records sent again after a send that did not complete


def applications(total: int, seed: int = 7) -> Iterator[Example]:
    """``total`` applications with an entity each, event times in the recent past, no drift."""
    start = datetime.now(UTC) - timedelta(seconds=total + 900)
    stream = LoanStream(seed=seed, start=start, interval=timedelta(seconds=1))
    for i, ex in zip(range(total), stream, strict=False):
        entity = f"chaos-{i:06d}"
        yield dataclasses.replace(
            ex, entity_id=entity, record_id=f"rec-{i:06d}", record={**ex.record, "applicant_id": entity}
        )


class App:
    """The producer and the app, sharing one ledger; ``retry_s`` bounds one request's retries."""

    def __init__(
        self, bootstrap: str, targets: dict[str, str], metadata: Metadata, retry_s: float = 180.0
    ) -> None:
        self.ledger = Ledger()
        self._bootstrap = bootstrap
        self._md = metadata
        self._retry_s = retry_s
        self._targets = targets
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> App:
        # Channels belong to the running event loop: made here, not in __init__.
        self._channels = {n: grpc.aio.insecure_channel(self._targets[n]) for n in ("gateway", "featurestore")}
        self.gateway = gw_grpc.GatewayServiceStub(self._channels["gateway"])
        self.features = fs_grpc.FeatureStoreServiceStub(self._channels["featurestore"])
        # Idempotent producer: a send the client retries itself is stored once by the broker.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=30_000,
        )
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._producer is not None:
            await self._producer.stop()
        for channel in self._channels.values():
            await channel.close()

    async def _call(self, name: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """``call`` until it succeeds; each failed attempt counted; None when given up."""
        deadline = time.monotonic() + self._retry_s
        delay = 0.1
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRY:
                    raise
                self.ledger.failed[f"{name} {exc.code().name}"] += 1
            if time.monotonic() > deadline:
                self.ledger.gave_up[name] += 1
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def produce(self, batch: list[Example]) -> None:
        """Sends each record until the broker acknowledges it (same record id on a resend)."""
        assert self._producer is not None
        topic = topics.raw(USE_CASE)
        pending = list(batch)
        deadline = time.monotonic() + self._retry_s
        while pending:
            futures = [
                await self._producer.send(
                    topic, to_json({**ex.record, "record_id": ex.record_id}), key=ex.entity_id.encode()
                )
                for ex in pending
            ]
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = []
            for ex, result in zip(pending, results, strict=True):
                if isinstance(result, BaseException):
                    failed.append(ex)
                else:
                    self.ledger.records[ex.record_id] = ex.entity_id
            if failed and time.monotonic() > deadline:
                raise Unavailable(f"{len(failed)} records not acknowledged by the broker")
            if failed:
                self.ledger.resent += len(failed)
                await asyncio.sleep(0.5)
            pending = failed

    async def online(self, batch: list[Example], timeout: float | None = None) -> bool:
        """Until every record of ``batch`` is the online row of its entity; False on timeout."""
        want = {ex.entity_id: ex.record_id for ex in batch}
        deadline = time.monotonic() + (timeout or self._retry_s)
        while want:
            try:
                reply = await self.features.GetOnlineFeatures(
                    fs_pb.GetOnlineFeaturesRequest(use_case=USE_CASE, entity_ids=list(want)),
                    metadata=self._md,
                    timeout=10,
                )
                for row in reply.rows:
                    if row.found and row.record_id == want.get(row.entity_id):
                        want.pop(row.entity_id)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRY:
                    raise
            if want and time.monotonic() > deadline:
                return False
            if want:
                await asyncio.sleep(0.1)
        return True

    async def serve(self, batch: list[Example]) -> int:
        """A decision per record, then its outcome as feedback; returns the feedback recorded."""
        request = gw_pb.PredictBatchRequest(
            use_case=USE_CASE, inputs=[gw_pb.PredictionInput(entity_id=ex.entity_id) for ex in batch]
        )
        reply = await self._call(
            "PredictBatch", lambda: self.gateway.PredictBatch(request, metadata=self._md, timeout=10)
        )
        if reply is None:
            return 0
        served: list[tuple[Example, str]] = []
        for ex, p in zip(batch, reply.predictions, strict=True):
            if p.error:
                self.ledger.failed[f"PredictBatch row:{p.error[:40]}"] += 1
                continue
            self.ledger.predictions[p.prediction_id] = ex.record_id
            served.append((ex, p.prediction_id))

        async def feedback(ex: Example, prediction_id: str) -> bool:
            fid = f"fb-{ex.record_id}"
            req = gw_pb.RecordFeedbackRequest(
                prediction_id=prediction_id,
                use_case=USE_CASE,
                outcome=common_pb2.Value(int64_value=int(ex.label)),
                observed_at=_ts(datetime.now(UTC)),
                feedback_id=fid,
                record_id=ex.record_id,
                event_time=_ts(ex.event_time),
                entity_id=ex.entity_id,
            )
            ok = await self._call(
                "RecordFeedback", lambda: self.gateway.RecordFeedback(req, metadata=self._md, timeout=10)
            )
            if ok is not None:
                self.ledger.feedback[fid] = prediction_id
            return ok is not None

        done = await asyncio.gather(*[feedback(ex, pid) for ex, pid in served])
        return sum(done)

    async def round_trip(self, batch: list[Example]) -> bool:
        """Produce, wait online, predict, report: True when the whole batch went through."""
        await self.produce(batch)
        if not await self.online(batch):
            self.ledger.gave_up["online"] += 1
            return False
        return await self.serve(batch) == len(batch)
