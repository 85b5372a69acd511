"""The rows the stream produces and the offline schemas they are stored with."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from libs.usecase import UseCase
from services.featurestore.layout import CREATED, DATASET_URI, DATASET_VERSION, EVENT_TIMESTAMP, RECORD_ID

TS = pa.timestamp("us", tz="UTC")
_LABEL_TYPES = {"int": pa.int64(), "float": pa.float64(), "string": pa.string(), "bool": pa.bool_(),
                "timestamp": TS}

# Columns of a use case's labels dataset.
LABEL_COLUMNS = ("key", "entity_id", "event_time", "label", "label_time", "record_id")


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """The features of one record, as of its event time."""

    use_case: str
    entity_id: str
    event_time_us: int
    record_id: str
    values: list[float | None]  # in uc.model_inputs() order
    # False for a late record: stored offline, not written over a newer online value.
    newest: bool
    dataset_version: str = ""
    dataset_uri: str = ""
    # The record's value of the use case's fairness attribute, as text (None: no value).
    attribute: str | None = None


@dataclass(frozen=True, slots=True)
class LabelRow:
    """The label of one example, and when it became known."""

    use_case: str
    entity_id: str
    event_time_us: int
    label: Any
    label_time_us: int
    record_id: str

    @property
    def key(self) -> str:
        # A label is about one example: its record id, else entity and event time.
        return self.record_id or f"{self.entity_id}@{self.event_time_us}"


def us_to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def datetime_to_us(at: datetime) -> int:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def attribute_column(uc: UseCase) -> str | None:
    """Offline column holding the fairness attribute of each record (the evaluator's groups)."""
    return f"_attr_{uc.evaluation.fairness.attribute}" if uc.evaluation.fairness else None


def feature_schema(uc: UseCase) -> pa.Schema:
    attr = attribute_column(uc)
    return pa.schema([
        pa.field(uc.entity.field, pa.string(), nullable=False),
        pa.field(EVENT_TIMESTAMP, TS, nullable=False),
        pa.field(CREATED, TS, nullable=False),
        pa.field(RECORD_ID, pa.string(), nullable=False),
        pa.field(DATASET_VERSION, pa.string()),
        pa.field(DATASET_URI, pa.string()),
        *([pa.field(attr, pa.string())] if attr else []),
        *[pa.field(c, pa.float64()) for c in uc.model_inputs()],
    ])


def label_schema(uc: UseCase) -> pa.Schema:
    return pa.schema([
        pa.field("key", pa.string(), nullable=False),
        pa.field("entity_id", pa.string(), nullable=False),
        pa.field("event_time", TS, nullable=False),
        pa.field("label", _LABEL_TYPES[uc.fields[uc.label.field].type]),
        pa.field("label_time", TS, nullable=False),
        pa.field("record_id", pa.string()),
    ])


def feature_table(uc: UseCase, rows: list[FeatureRow], created_us: int) -> pa.Table:
    columns: dict[str, Any] = {
        uc.entity.field: [r.entity_id for r in rows],
        EVENT_TIMESTAMP: [r.event_time_us for r in rows],
        CREATED: [created_us] * len(rows),
        RECORD_ID: [r.record_id for r in rows],
        DATASET_VERSION: [r.dataset_version for r in rows],
        DATASET_URI: [r.dataset_uri for r in rows],
    }
    attr = attribute_column(uc)
    if attr:
        columns[attr] = [r.attribute for r in rows]
    names = uc.model_inputs()
    for j, name in enumerate(names):
        columns[name] = [r.values[j] for r in rows]
    schema = feature_schema(uc)
    return pa.table({n: pa.array(columns[n], type=schema.field(n).type) for n in schema.names}, schema=schema)


def label_table(uc: UseCase, rows: list[LabelRow]) -> pa.Table:
    schema = label_schema(uc)
    data = {"key": [r.key for r in rows], "entity_id": [r.entity_id for r in rows],
            "event_time": [r.event_time_us for r in rows], "label": [r.label for r in rows],
            "label_time": [r.label_time_us for r in rows], "record_id": [r.record_id for r in rows]}
    return pa.table({n: pa.array(data[n], type=schema.field(n).type) for n in schema.names}, schema=schema)
