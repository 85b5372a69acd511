"""The offline schemas of the stream's rows (Arrow), and the tables written with them."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from libs.usecase import UseCase
from services.featurestore.domain import FeatureRow, LabelRow
from services.featurestore.store.layout import (
    CREATED,
    DATASET_URI,
    DATASET_VERSION,
    EVENT_TIMESTAMP,
    RECORD_ID,
)

TS = pa.timestamp("us", tz="UTC")
_LABEL_TYPES = {
    "int": pa.int64(),
    "float": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": TS,
}

# Columns of a use case's labels dataset.
LABEL_COLUMNS = ("key", "entity_id", "event_time", "label", "label_time", "record_id")


def attribute_column(uc: UseCase) -> str | None:
    """Offline column holding the fairness attribute of each record (the evaluator's groups)."""
    return f"_attr_{uc.evaluation.fairness.attribute}" if uc.evaluation.fairness else None


def feature_schema(uc: UseCase) -> pa.Schema:
    attr = attribute_column(uc)
    return pa.schema(
        [
            pa.field(uc.entity.field, pa.string(), nullable=False),
            pa.field(EVENT_TIMESTAMP, TS, nullable=False),
            pa.field(CREATED, TS, nullable=False),
            pa.field(RECORD_ID, pa.string(), nullable=False),
            pa.field(DATASET_VERSION, pa.string()),
            pa.field(DATASET_URI, pa.string()),
            *([pa.field(attr, pa.string())] if attr else []),
            *[pa.field(c, pa.float64()) for c in uc.model_inputs()],
        ]
    )


def label_schema(uc: UseCase) -> pa.Schema:
    return pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("entity_id", pa.string(), nullable=False),
            pa.field("event_time", TS, nullable=False),
            pa.field("label", _LABEL_TYPES[uc.fields[uc.label.field].type]),
            pa.field("label_time", TS, nullable=False),
            pa.field("record_id", pa.string()),
        ]
    )


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
    data = {
        "key": [r.key for r in rows],
        "entity_id": [r.entity_id for r in rows],
        "event_time": [r.event_time_us for r in rows],
        "label": [r.label for r in rows],
        "label_time": [r.label_time_us for r in rows],
        "record_id": [r.record_id for r in rows],
    }
    return pa.table({n: pa.array(data[n], type=schema.field(n).type) for n in schema.names}, schema=schema)
