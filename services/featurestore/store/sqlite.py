"""Feast's SQLite online store with batched writes (a Feast custom online store).

Feast's ``SqliteOnlineStore.online_write_batch`` runs one ``INSERT … ON CONFLICT`` per
feature per entity from Python: for a use case with 26 model inputs that is 26 statements
per row, about half of the ~0.22 ms a row costs to write. This subclass sends the same
upserts — same table, same columns, same encoding, so Feast's own ``online_read`` and
``get_online_features`` read them unchanged — with one ``executemany`` per micro-batch.

It is selected in ``feature_store.yaml`` as
``type: services.featurestore.store.sqlite.BatchedSqliteOnlineStore`` (Feast loads a
custom store by its class path, and its config class by the same name + ``Config``).
Options it does not batch (vector search, the value_num column) fall back to Feast's path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig, _quote_id, _table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.utils import to_naive_utc

STORE_TYPE = "services.featurestore.store.sqlite.BatchedSqliteOnlineStore"


class BatchedSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    # Narrower than the base class's Literal on purpose: Feast picks the config class by this value.
    type: Literal["services.featurestore.store.sqlite.BatchedSqliteOnlineStore"] = (
        "services.featurestore.store.sqlite.BatchedSqliteOnlineStore"  # type: ignore[assignment]
    )


def _epoch(ts: datetime | None) -> int | None:
    # What Feast stores: the naive UTC time through its sqlite3 datetime adapter (whole seconds).
    return None if ts is None else int(to_naive_utc(ts).timestamp())


def _text(val: Any) -> str | None:
    # value_text as Feast's extract_text_and_num fills it (its search and filters read it).
    kind = val.WhichOneof("val")
    if kind == "string_val":
        return val.string_val
    if kind in ("int64_val", "int32_val", "double_val", "float_val"):
        return str(getattr(val, kind))
    if kind == "bool_val":
        return str(val.bool_val)
    return None


class BatchedSqliteOnlineStore(SqliteOnlineStore):
    def online_write_batch(
        self,
        config: Any,
        table: Any,
        data: Sequence[tuple[Any, dict[str, Any], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        options = config.online_store
        if options.vector_enabled or getattr(options, "enable_openai_compatible_store", False):
            return super().online_write_batch(config, table, list(data), progress)
        version = config.entity_key_serialization_version
        rows = []
        for entity_key, values, timestamp, created in data:
            key = serialize_entity_key(entity_key, entity_key_serialization_version=version)
            event_ts, created_ts = _epoch(timestamp), _epoch(created)
            rows += [
                (key, name, val.SerializeToString(), _text(val), event_ts, created_ts)
                for name, val in values.items()
            ]
        name = _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        sql = (
            f"INSERT INTO {_quote_id(name)} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
            "created_ts = excluded.created_ts"
        )
        conn = self._get_conn(config)
        with conn:
            conn.executemany(sql, rows)
        if progress:
            progress(len(data))
        return None


# -- rows straight from Arrow ---------------------------------------------------------

_SCALARS = {
    "Float64": "double_val",
    "Float32": "float_val",
    "Int64": "int64_val",
    "Int32": "int32_val",
    "String": "string_val",
    "Bool": "bool_val",
}


def arrow_rows(
    view: Any, table: pa.Table
) -> list[tuple[Any, dict[str, Any], datetime, datetime | None]] | None:
    """``online_write_batch`` input for ``table``: what Feast's ``write_to_online_store`` builds
    (via pandas and a per-value type dispatch), built straight from the Arrow columns.

    ``None`` when the view has a type or shape this does not cover (the caller then takes
    Feast's path). Nulls and NaNs become empty values, as Feast writes them.
    """
    source = view.batch_source
    keys = [(c.name, _SCALARS.get(str(c.dtype), "")) for c in view.entity_columns]
    fields = [(f.name, _SCALARS.get(str(f.dtype), "")) for f in view.features]
    if source is None or not keys or any(not setter for _, setter in keys + fields):
        return None
    if any(name not in table.column_names for name, _ in keys + fields):
        return None
    columns = {name: table.column(name).to_pylist() for name, _ in keys + fields}
    times = table.column(source.timestamp_field).to_pylist()
    created = (
        table.column(source.created_timestamp_column).to_pylist()
        if source.created_timestamp_column
        else [None] * table.num_rows
    )
    rows = []
    for i in range(table.num_rows):
        key = EntityKeyProto(
            join_keys=[k for k, _ in keys], entity_values=[ValueProto(**{s: columns[k][i]}) for k, s in keys]
        )
        values = {}
        for name, setter in fields:
            v = columns[name][i]
            values[name] = (
                ValueProto()
                if v is None or (isinstance(v, float) and math.isnan(v))
                else ValueProto(**{setter: v})
            )
        rows.append((key, values, times[i], created[i]))
    return rows
