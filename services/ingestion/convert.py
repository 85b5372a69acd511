"""Domain outcomes ↔ protobuf, at the edge (events and gRPC messages)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.common.v1 import common_pb2
from aifactory.ingestion.v1 import events_pb2, ingestion_service_pb2
from services.ingestion.pii import Privacy
from services.ingestion.records import Outcome
from services.ingestion.store import DatasetVersion
from services.ingestion.violations import Violation

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
# Value's oneof member for each typed Python value (bool before int: a bool is an int).
_KIND = {bool: "bool_value", int: "int64_value", float: "double_value", str: "string_value"}


def timestamp(at: datetime) -> Timestamp:
    """An aware datetime → Timestamp (exact to the microsecond; faster than FromDatetime)."""
    micros = (at - _EPOCH) // _MICRO
    seconds, rest = divmod(micros, 1_000_000)
    return Timestamp(seconds=seconds, nanos=rest * 1000)


def value(v: Any) -> common_pb2.Value:
    """A typed field value → Value; timestamps become ISO-8601 strings in UTC."""
    out = common_pb2.Value()
    _set(out, v)
    return out


def _set(target: common_pb2.Value, v: Any) -> None:
    if v is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(v, datetime):
        target.string_value = v.isoformat()
    else:
        setattr(target, _KIND.get(type(v), "string_value"), v if type(v) in _KIND else str(v))


def violations(items: Iterable[Violation]) -> list[events_pb2.Violation]:
    return [events_pb2.Violation(field=v.field, code=v.code, message=v.message) for v in items]


def dataset_ref(use_case: str, version: str, uri: str) -> common_pb2.DatasetRef:
    return common_pb2.DatasetRef(use_case=use_case, version=version, uri=uri)


def accepted(
    use_case: str,
    outcome: Outcome,
    *,
    schema_version: str,
    dataset: common_pb2.DatasetRef,
    ingested_at: Timestamp,
) -> events_pb2.RecordAccepted:
    assert outcome.event_time is not None
    record = common_pb2.Record(
        use_case=use_case,
        entity_id=outcome.entity_id,
        event_time=timestamp(outcome.event_time),
        record_id=outcome.record_id,
    )
    fields = record.fields
    for name, v in outcome.values.items():  # set in place: no temporary Value to copy (hot loop)
        kind = _KIND.get(type(v))
        if kind is not None:
            setattr(fields[name], kind, v)
        else:
            _set(fields[name], v)
    return events_pb2.RecordAccepted(
        record=record, dataset=dataset, ingested_at=ingested_at, schema_version=schema_version
    )


# Dead letters keep at most this much of the original payload (the broker's message limit is ~1 MB).
MAX_ORIGINAL_BYTES = 256 * 1024


def rejected(
    use_case: str,
    outcome: Outcome,
    *,
    original: bytes,
    content_type: str,
    schema_version: str,
    rejected_at: Timestamp,
    source: tuple[str, int, int] | None = None,
    max_original: int = MAX_ORIGINAL_BYTES,
    privacy: Privacy | None = None,
) -> events_pb2.RecordRejected:
    """The dead letter of a rejected payload. With ``privacy`` (the use case's rules) the
    copy of the payload it carries is masked like an accepted record (see
    :meth:`~services.ingestion.pii.Privacy.redact_payload`)."""
    topic, partition, offset = source or ("", 0, 0)
    complete = len(original) <= max_original
    kept = original[:max_original]
    if privacy is not None:
        kept = privacy.redact_payload(kept, content_type, complete)
    return events_pb2.RecordRejected(
        use_case=use_case,
        original=kept,
        content_type=content_type,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        violations=violations(outcome.violations),
        rejected_at=rejected_at,
        record_id=outcome.record_id,
        schema_version=schema_version,
        original_truncated=len(original) > max_original,
        original_size=len(original),
    )


def result(index: int, outcome: Outcome) -> ingestion_service_pb2.IngestResult:
    return ingestion_service_pb2.IngestResult(
        index=index,
        accepted=outcome.accepted,
        record_id=outcome.record_id,
        violations=violations(outcome.violations),
    )


def dataset(version: DatasetVersion) -> ingestion_service_pb2.Dataset:
    msg = ingestion_service_pb2.Dataset(
        ref=dataset_ref(version.use_case, version.version, version.uri),
        record_count=version.rows,
        schema_version=version.schema_version,
        parent_version=version.parent,
        file_count=version.file_count,
    )
    if version.created_at is not None:
        msg.created_at.CopyFrom(timestamp(version.created_at))
    if version.min_event_time is not None and version.max_event_time is not None:
        msg.event_time_range.start.CopyFrom(timestamp(version.min_event_time))
        # TimeRange is half-open: the newest record is just inside its end.
        msg.event_time_range.end.CopyFrom(timestamp(version.max_event_time + timedelta(microseconds=1)))
    return msg
