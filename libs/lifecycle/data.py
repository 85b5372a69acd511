"""The ``TrainingData`` port: labelled, point-in-time-correct frames from the feature store.

The trainer (training window) and the evaluator (holdout window) both read through it.
:class:`GrpcTrainingData` implements it against ``aifactory.featurestore.v1``
``StreamTrainingSet``: the rows cross the wire as Arrow record batches (see
:mod:`libs.lifecycle.wire`) and the frame is rebuilt from them, checked against the
stream's header (row count, schema, content hash). No file of the feature store is ever
opened here, so the services need no shared disk.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import grpc
import pandas as pd
from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.common.v1 import common_pb2
from aifactory.featurestore.v1 import featurestore_service_pb2 as fs_pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as fs_grpc
from libs.errors import InvalidArgument
from libs.lifecycle.frames import Window
from libs.lifecycle.wire import FrameAssembler, TrainingSetMismatch, content_hash
from libs.rpc.errors import typed_rpc_error


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable dataset version (common.v1.DatasetRef)."""

    use_case: str
    version: str
    uri: str = ""

    def to_proto(self) -> common_pb2.DatasetRef:
        return common_pb2.DatasetRef(use_case=self.use_case, version=self.version, uri=self.uri)

    @classmethod
    def from_proto(cls, ref: common_pb2.DatasetRef) -> DatasetVersion:
        return cls(ref.use_case, ref.version, ref.uri)


@dataclass(frozen=True)
class FeatureVersion:
    """One feature and the version of its definition (common.v1.FeatureRef)."""

    use_case: str
    feature_view: str
    name: str
    version: str

    def to_proto(self) -> common_pb2.FeatureRef:
        return common_pb2.FeatureRef(
            use_case=self.use_case, feature_view=self.feature_view, name=self.name, version=self.version
        )

    @classmethod
    def from_proto(cls, ref: common_pb2.FeatureRef) -> FeatureVersion:
        return cls(ref.use_case, ref.feature_view, ref.name, ref.version)


@dataclass(frozen=True)
class TrainingSet:
    """A labelled frame (see :mod:`libs.lifecycle.frames`) and where it came from."""

    frame: pd.DataFrame
    datasets: list[DatasetVersion] = field(default_factory=list)
    features: list[FeatureVersion] = field(default_factory=list)
    # Content hash of the training set as the store built it ("" when unknown).
    content_hash: str = ""
    # The set's name for lineage (featurestore://<use case>/training-sets/<hash>): an
    # identifier, never a location to open.
    uri: str = ""
    # Labels of the range the store left out, by reason (they join no feature row of
    # their own: see the feature store's TrainingSetHeader.quarantined).
    quarantined: dict[str, int] = field(default_factory=dict)

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())


class TrainingData(Protocol):
    async def get_training_set(self, use_case: str, time_range: Window | None) -> TrainingSet:
        """Labelled examples whose event time is in ``time_range`` (``None``: all there are).

        Raises ``Unavailable`` when the store cannot be reached (callers retry),
        ``NotFound``/``FailedPrecondition`` when there is nothing to give.
        """
        ...


# "All there is": the feature store's time range is required, so None asks for a
# range wide enough for any event time a record may carry.
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def time_range_proto(window: Window) -> common_pb2.TimeRange:
    return common_pb2.TimeRange(start=timestamp(window.start), end=timestamp(window.end))


def window_from_proto(time_range: common_pb2.TimeRange) -> Window | None:
    """A proto TimeRange → Window; ``None`` when unset (both ends zero)."""
    if not time_range.HasField("start") and not time_range.HasField("end"):
        return None
    try:
        start = time_range.start.ToDatetime(tzinfo=UTC) if time_range.HasField("start") else _BEGINNING
        end = (
            time_range.end.ToDatetime(tzinfo=UTC)
            if time_range.HasField("end")
            else datetime.now(UTC) + timedelta(days=1)
        )
    except (ValueError, OverflowError) as exc:  # outside 0001..9999, or nanos out of range
        raise InvalidArgument("window", str(exc)) from None
    try:
        return Window(start, end)
    except ValueError as exc:
        raise InvalidArgument("window", str(exc)) from None


def _finish(assembler: FrameAssembler, expected_hash: str) -> pd.DataFrame:
    """The rebuilt frame, its content hash checked against the header's (when it has one)."""
    frame = assembler.frame()
    if expected_hash and (got := content_hash(frame)) != expected_hash:
        raise TrainingSetMismatch(
            f"training set: content hash {got[:16]}... of the rows received is not the "
            f"header's {expected_hash[:16]}..."
        )
    return frame


class GrpcTrainingData:
    """``TrainingData`` over the feature store's ``StreamTrainingSet``.

    The channel is the caller's (built with its token and TLS), so this class does
    not decide how the service authenticates. A stream that does not match its header
    raises :class:`~libs.lifecycle.wire.TrainingSetMismatch` (a ``FailedPrecondition``).
    """

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float = 300.0) -> None:
        self._stub = fs_grpc.FeatureStoreServiceStub(channel)
        self._timeout = timeout_s

    async def get_training_set(self, use_case: str, time_range: Window | None) -> TrainingSet:
        window = time_range or Window(_BEGINNING, datetime.now(UTC) + timedelta(days=1))
        request = fs_pb.StreamTrainingSetRequest(use_case=use_case, time_range=time_range_proto(window))
        header: fs_pb.TrainingSetHeader | None = None
        assembler: FrameAssembler | None = None
        call = self._stub.StreamTrainingSet(request, timeout=self._timeout)
        try:
            async for message in call:
                part = message.WhichOneof("part")
                if part == "header" and header is None:
                    header = message.header
                    assembler = FrameAssembler(header.arrow_schema, header.row_count)
                elif part == "batch" and assembler is not None:
                    assembler.add(message.batch.arrow_ipc)
                else:
                    raise TrainingSetMismatch(f"training set stream: unexpected {part or 'empty'} message")
        except grpc.aio.AioRpcError as exc:
            # A label whose features have not landed yet is quarantined by the store (and
            # joins at the next build): it is no error, so no message text is read here.
            raise typed_rpc_error(exc, "feature store StreamTrainingSet") from None
        finally:
            call.cancel()  # no-op once the stream ended; stops the server when we gave up early
        if header is None or assembler is None:
            raise TrainingSetMismatch("training set stream: ended without a header")
        frame = await asyncio.to_thread(_finish, assembler, header.content_hash)
        if header.label and header.label != "label" and header.label in frame.columns:
            frame = frame.rename(columns={header.label: "label"})
        return TrainingSet(
            frame=frame,
            datasets=[DatasetVersion.from_proto(d) for d in header.datasets],
            features=[FeatureVersion.from_proto(f) for f in header.features],
            content_hash=header.content_hash,
            uri=header.ref.uri,
            quarantined={reason: int(n) for reason, n in sorted(header.quarantined.items())},
        )
