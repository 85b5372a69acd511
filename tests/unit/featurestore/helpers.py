"""Building the events the feature store consumes, as ingestion and the gateway would."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from aif.datagen import Example
from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.ingestion.v1 import events_pb2 as ingestion_events
from libs.bus.headers import EventMeta
from libs.bus.types import event_type_of, schema_version_of
from libs.usecase import load_default


def value(v: Any) -> common_pb2.Value:
    if v is None:
        return common_pb2.Value(null_value=0)
    if isinstance(v, bool):
        return common_pb2.Value(bool_value=v)
    if isinstance(v, int):
        return common_pb2.Value(int64_value=v)
    if isinstance(v, float):
        return common_pb2.Value(double_value=v)
    if isinstance(v, datetime):
        return common_pb2.Value(string_value=v.isoformat())
    return common_pb2.Value(string_value=str(v))


def record_accepted(
    use_case: str,
    entity_id: str,
    record_id: str,
    event_time: datetime,
    fields: dict[str, Any],
    dataset_version: str = "ds-1",
) -> ingestion_events.RecordAccepted:
    rec = common_pb2.Record(
        use_case=use_case,
        entity_id=entity_id,
        record_id=record_id,
        fields={k: value(v) for k, v in fields.items()},
    )
    rec.event_time.FromDatetime(event_time)
    return ingestion_events.RecordAccepted(
        record=rec,
        schema_version="1",
        dataset=common_pb2.DatasetRef(
            use_case=use_case, version=dataset_version, uri=f"file:///raw/{use_case}/{dataset_version}"
        ),
    )


@functools.cache
def _pii_fields(use_case: str) -> frozenset[str]:
    return frozenset(load_default()[use_case].pii_fields())


def from_example(
    use_case: str, ex: Example, dataset_version: str = "ds-1"
) -> ingestion_events.RecordAccepted:
    """The record as ingestion publishes it (personal data never leaves ingestion in clear:
    the feature store has no use for it, so the test records simply leave it out)."""
    pii = _pii_fields(use_case)
    fields = {k: v for k, v in ex.record.items() if k not in pii}
    return record_accepted(use_case, ex.entity_id, ex.record_id, ex.event_time, fields, dataset_version)


def feedback(use_case: str, ex: Example) -> gateway_events.FeedbackRecorded:
    event = gateway_events.FeedbackRecorded(
        feedback_id=f"fb-{ex.record_id}",
        use_case=use_case,
        entity_id=ex.entity_id,
        record_id=ex.record_id,
        outcome=value(ex.label),
    )
    event.event_time.FromDatetime(ex.event_time)
    event.observed_at.FromDatetime(ex.label_time)
    event.recorded_at.FromDatetime(ex.label_time)
    return event


def headers_for(event: Any) -> list[tuple[str, bytes]]:
    meta = EventMeta.new(event_type_of(event), schema_version_of(event), "test", "test")
    return meta.to_headers()
