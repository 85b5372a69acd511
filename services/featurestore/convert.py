"""Protobuf ⇄ the feature store's domain: Kafka events in and out, gRPC replies.

``decode_record`` reads ``aifactory.ingestion.v1.RecordAccepted`` (records topic),
``decode_record_batch`` a ``RecordAcceptedBatch`` (many records in one message) and
``decode_feedback`` reads ``aifactory.gateway.v1.FeedbackRecorded`` (feedback topic).
Anything that cannot be used raises :class:`~services.featurestore.domain.BadEvent` with
the reason the dead-letter record will carry. ``features_written`` builds the event
published after each micro-batch; ``online_reply``, ``training_set_reply`` and (for a
streamed set) ``training_set_header`` / ``training_set_batch`` the gRPC answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import NULL_VALUE
from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.common.v1 import common_pb2
from aifactory.featurestore.v1 import events_pb2 as featurestore_events
from aifactory.featurestore.v1 import featurestore_service_pb2 as pb
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.ingestion.v1 import events_pb2 as ingestion_events
from libs.bus import headers as h
from libs.bus.types import event_type_of
from libs.errors import InvalidArgument
from libs.features import feature_versions
from libs.usecase import UnknownUseCase, UseCase, UseCases
from services.featurestore.domain import BadEvent, FeatureRow, FeedbackIn, RecordIn, coerce_label
from services.featurestore.store.online import OnlineRow
from services.featurestore.training import TrainingSet

RECORD_ACCEPTED = event_type_of(ingestion_events.RecordAccepted)
RECORD_BATCH = event_type_of(ingestion_events.RecordAcceptedBatch)
FEEDBACK_RECORDED = event_type_of(gateway_events.FeedbackRecorded)


# -- Kafka events in ----------------------------------------------------------------------


def header_map(headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes] | None) -> dict[str, str]:
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: (v or b"").decode("utf-8", "replace") for k, v in items}


def from_value(value: common_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    return getattr(value, kind)


def _timestamp_us(ts: Any) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def _check_type(headers: dict[str, str], expected: str) -> None:
    got = headers.get(h.EVENT_TYPE)
    if got is not None and got != expected:
        raise BadEvent("event_type", f"event type {got!r} is not {expected}")


def _usecase(usecases: UseCases, name: str, field: str) -> UseCase:
    try:
        return usecases.require(name, field)
    except UnknownUseCase as exc:
        # Dead letters keep the reason they always had (without the list of known use cases).
        raise BadEvent("use_case", f"{exc.field}: unknown use case {exc.name!r}") from None


def decode_record(value: bytes | None, headers: dict[str, str], usecases: UseCases) -> RecordIn:
    _check_type(headers, RECORD_ACCEPTED)
    event = ingestion_events.RecordAccepted()
    try:
        event.ParseFromString(value or b"")
    except DecodeError as exc:
        raise BadEvent("undecodable", f"payload is not a valid {RECORD_ACCEPTED}: {exc}") from None
    return record_in(event, usecases)


def decode_record_batch(value: bytes | None) -> ingestion_events.RecordAcceptedBatch:
    batch = ingestion_events.RecordAcceptedBatch()
    try:
        batch.ParseFromString(value or b"")
    except DecodeError as exc:
        raise BadEvent("undecodable", f"payload is not a valid {RECORD_BATCH}: {exc}") from None
    return batch


def record_in(event: ingestion_events.RecordAccepted, usecases: UseCases) -> RecordIn:
    """A decoded RecordAccepted → the stream's input; :class:`BadEvent` when it cannot be used."""
    rec = event.record
    _usecase(usecases, rec.use_case, "record.use_case")
    if not rec.entity_id:
        raise BadEvent("entity_id", "record.entity_id: missing")
    if not rec.record_id:
        raise BadEvent("record_id", "record.record_id: missing")
    if not rec.HasField("event_time"):
        raise BadEvent("event_time", "record.event_time: missing")
    return RecordIn(
        rec.use_case,
        rec.entity_id,
        _timestamp_us(rec.event_time),
        rec.record_id,
        {k: from_value(v) for k, v in rec.fields.items()},
        event.dataset.version,
        event.dataset.uri,
    )


def decode_feedback(value: bytes | None, headers: dict[str, str], usecases: UseCases) -> FeedbackIn:
    _check_type(headers, FEEDBACK_RECORDED)
    event = gateway_events.FeedbackRecorded()
    try:
        event.ParseFromString(value or b"")
    except DecodeError as exc:
        raise BadEvent("undecodable", f"payload is not a valid {FEEDBACK_RECORDED}: {exc}") from None
    uc = _usecase(usecases, event.use_case, "use_case")
    if not event.entity_id:
        raise BadEvent("entity_id", "entity_id: missing; a label must name its example's entity")
    if not event.HasField("event_time"):
        raise BadEvent("event_time", "event_time: missing; a label must name its example's event time")
    observed = event.observed_at if event.HasField("observed_at") else event.recorded_at
    if not observed.seconds and not observed.nanos:
        raise BadEvent("observed_at", "observed_at: missing (and no recorded_at)")
    try:
        outcome = coerce_label(uc, from_value(event.outcome))
    except ValueError as exc:
        raise BadEvent("outcome", f"outcome: {exc}") from None
    return FeedbackIn(
        uc.name,
        event.entity_id,
        _timestamp_us(event.event_time),
        event.record_id,
        outcome,
        _timestamp_us(observed),
    )


# -- Kafka events out ---------------------------------------------------------------------


def timestamp(us: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts


def features_written(
    use_case: str, rows: Sequence[FeatureRow], refs: Sequence[common_pb2.FeatureRef]
) -> featurestore_events.FeaturesWritten:
    """What one micro-batch wrote for one use case (``rows`` all of it, none empty)."""
    lo, hi = min(r.event_time_us for r in rows), max(r.event_time_us for r in rows)
    written = Timestamp()
    written.GetCurrentTime()
    return featurestore_events.FeaturesWritten(
        use_case=use_case,
        entity_ids=sorted({r.entity_id for r in rows}),
        features=refs,
        row_count=len(rows),
        record_ids=[r.record_id for r in rows],
        written_at=written,
        event_time_range=common_pb2.TimeRange(start=timestamp(lo), end=timestamp(hi + 1)),
    )


# -- gRPC ---------------------------------------------------------------------------------


def _value(number: float | None) -> common_pb2.Value:
    return (
        common_pb2.Value(null_value=NULL_VALUE) if number is None else common_pb2.Value(double_value=number)
    )


def _datetime(ts: Any) -> datetime:
    try:
        return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC)
    except (ValueError, OverflowError, OSError) as exc:  # outside what datetime can hold
        raise InvalidArgument("time_range", f"timestamp out of range: {exc}") from None


def time_range(
    request: pb.GetTrainingSetRequest | pb.StreamTrainingSetRequest, uc: UseCase
) -> tuple[datetime, datetime]:
    """The request's [start, end): end defaults to now, start to end minus the training window."""
    tr = request.time_range
    end = _datetime(tr.end) if request.HasField("time_range") and tr.HasField("end") else datetime.now(UTC)
    try:
        start = (
            _datetime(tr.start)
            if request.HasField("time_range") and tr.HasField("start")
            else end - uc.training.window
        )
    except OverflowError:  # an end near year 1 minus the training window
        raise InvalidArgument("time_range", "end is too early for the training window") from None
    if start >= end:
        raise InvalidArgument("time_range", f"start {start.isoformat()} is not before end {end.isoformat()}")
    return start, end


def online_reply(
    uc: UseCase, columns: Sequence[str], rows: Sequence[OnlineRow]
) -> pb.GetOnlineFeaturesResponse:
    versions = feature_versions(uc)
    row_versions = {c: versions[c] for c in columns}
    reply = pb.GetOnlineFeaturesResponse(
        features=[
            common_pb2.FeatureRef(use_case=uc.name, feature_view=uc.name, name=c, version=versions[c])
            for c in columns
        ]
    )
    for row in rows:
        out = reply.rows.add(entity_id=row.entity_id, found=row.found, record_id=row.record_id)
        for c in columns:
            out.values[c].CopyFrom(_value(row.values[c]))
        out.feature_versions.update(row_versions)
        if row.event_time_us is not None:
            out.event_time.FromMicroseconds(row.event_time_us)
    return reply


def _datasets(uc: UseCase, ts: TrainingSet) -> list[common_pb2.DatasetRef]:
    return [common_pb2.DatasetRef(use_case=uc.name, version=v, uri=u) for v, u in ts.datasets]


def _features(uc: UseCase, ts: TrainingSet) -> list[common_pb2.FeatureRef]:
    return [
        common_pb2.FeatureRef(use_case=uc.name, feature_view=c.view, name=c.name, version=c.version)
        for c in ts.features
    ]


def training_set_reply(uc: UseCase, ts: TrainingSet) -> pb.GetTrainingSetResponse:
    """The set's description, without its rows (``uri`` and ``format`` are no longer set)."""
    return pb.GetTrainingSetResponse(
        row_count=ts.row_count,
        content_hash=ts.content_hash,
        label=ts.label,
        datasets=_datasets(uc, ts),
        features=_features(uc, ts),
        quarantined=ts.quarantined,
    )


def training_set_header(uc: UseCase, ts: TrainingSet, schema: bytes) -> pb.StreamTrainingSetResponse:
    """The first message of a streamed set: its description and Arrow schema (IPC bytes)."""
    return pb.StreamTrainingSetResponse(
        header=pb.TrainingSetHeader(
            row_count=ts.row_count,
            datasets=_datasets(uc, ts),
            features=_features(uc, ts),
            content_hash=ts.content_hash,
            label=ts.label,
            quarantined=ts.quarantined,
            arrow_schema=schema,
            ref=common_pb2.DatasetRef(use_case=uc.name, version=ts.content_hash, uri=ts.ref_uri),
        )
    )


def training_set_batch(message: bytes) -> pb.StreamTrainingSetResponse:
    """One Arrow IPC record batch message of a streamed set."""
    return pb.StreamTrainingSetResponse(batch=pb.TrainingSetBatch(arrow_ipc=message))
