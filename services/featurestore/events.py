"""Protobuf at the edge: Kafka messages → the stream's domain inputs, or a typed reason.

``decode_record`` reads ``aifactory.ingestion.v1.RecordAccepted`` (records topic),
``decode_record_batch`` a ``RecordAcceptedBatch`` (many records in one message) and
``decode_feedback`` reads ``aifactory.gateway.v1.FeedbackRecorded`` (feedback topic).
Anything that cannot be used raises :class:`BadEvent` with the reason the dead-letter
record will carry.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.ingestion.v1 import events_pb2 as ingestion_events
from libs.bus import headers as h
from libs.bus.types import event_type_of
from libs.usecase import UseCase

RECORD_ACCEPTED = event_type_of(ingestion_events.RecordAccepted)
RECORD_BATCH = event_type_of(ingestion_events.RecordAcceptedBatch)
FEEDBACK_RECORDED = event_type_of(gateway_events.FeedbackRecorded)


class BadEvent(Exception):
    """An event the feature store cannot use; ``code`` is machine-readable."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RecordIn:
    use_case: str
    entity_id: str
    event_time_us: int
    record_id: str
    fields: dict[str, Any]
    dataset_version: str
    dataset_uri: str

    @property
    def state_key(self) -> bytes:
        return state_key(self.use_case, self.entity_id)


@dataclass(frozen=True, slots=True)
class FeedbackIn:
    use_case: str
    entity_id: str
    event_time_us: int
    record_id: str
    outcome: Any
    observed_us: int


def state_key(use_case: str, entity_id: str) -> bytes:
    """The entity's key in the records topic, the repartition topic and the state table."""
    return f"{use_case}/{entity_id}".encode()


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


def decode_record(value: bytes | None, headers: dict[str, str], usecases: Mapping[str, UseCase]) -> RecordIn:
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


def record_in(event: ingestion_events.RecordAccepted, usecases: Mapping[str, UseCase]) -> RecordIn:
    """A decoded RecordAccepted → the stream's input; :class:`BadEvent` when it cannot be used."""
    rec = event.record
    if rec.use_case not in usecases:
        raise BadEvent("use_case", f"record.use_case: unknown use case {rec.use_case!r}")
    if not rec.entity_id:
        raise BadEvent("entity_id", "record.entity_id: missing")
    if not rec.record_id:
        raise BadEvent("record_id", "record.record_id: missing")
    if not rec.HasField("event_time"):
        raise BadEvent("event_time", "record.event_time: missing")
    return RecordIn(rec.use_case, rec.entity_id, _timestamp_us(rec.event_time), rec.record_id,
                    {k: from_value(v) for k, v in rec.fields.items()},
                    event.dataset.version, event.dataset.uri)


def coerce_label(uc: UseCase, value: Any) -> Any:
    """A label value as the spec's label field type; ``ValueError`` naming why not."""
    kind = uc.fields[uc.label.field].type
    if value is None:
        raise ValueError("label is null")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
            raise ValueError(f"label {value!r} is not an int")
        value = int(value)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"label {value!r} is not a number")
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"label {value!r} is not a bool")
    elif kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"label {value!r} is not a string")
    classes = uc.label.classes
    if classes is not None and not any(str(value) == str(c) for c in classes):
        raise ValueError(f"label {value!r} is not one of the classes {classes}")
    return value


def decode_feedback(value: bytes | None, headers: dict[str, str], usecases: Mapping[str, UseCase]) -> FeedbackIn:
    _check_type(headers, FEEDBACK_RECORDED)
    event = gateway_events.FeedbackRecorded()
    try:
        event.ParseFromString(value or b"")
    except DecodeError as exc:
        raise BadEvent("undecodable", f"payload is not a valid {FEEDBACK_RECORDED}: {exc}") from None
    uc = usecases.get(event.use_case)
    if uc is None:
        raise BadEvent("use_case", f"use_case: unknown use case {event.use_case!r}")
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
    return FeedbackIn(uc.name, event.entity_id, _timestamp_us(event.event_time), event.record_id,
                      outcome, _timestamp_us(observed))
