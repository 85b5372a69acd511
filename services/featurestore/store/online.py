"""Online feature reads from Feast, as domain rows (the API's protobuf is built in convert)."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from libs.errors import InvalidArgument
from libs.usecase import UseCase
from services.featurestore.store.layout import RECORD_ID

# feast.serving.FieldStatus
_PRESENT, _NULL_VALUE = 1, 2


def _double(vec: Any, i: int) -> float | None:
    if len(vec.values) <= i:
        return None
    value = vec.values[i]
    return value.double_val if value.WhichOneof("val") == "double_val" else None


def _string(vec: Any, i: int) -> str:
    if len(vec.values) <= i:
        return ""
    value = vec.values[i]
    return value.string_val if value.WhichOneof("val") == "string_val" else ""


@dataclass(frozen=True)
class OnlineRow:
    entity_id: str
    values: dict[str, float | None]
    # False when the online store has nothing for the entity.
    found: bool
    # Event time (µs) of the freshest value in the row; None when not found. Feast's
    # SQLite store keeps whole seconds only (Redis keeps microseconds).
    event_time_us: int | None
    # The record the row was computed from ("" when not found).
    record_id: str = ""


class OnlineReader:
    def __init__(self, store: Any) -> None:
        self._store = store
        # Feast's SQLite store shares one connection; reads take turns (they are ~0.1 ms/entity).
        self._lock = threading.Lock()

    def columns(self, uc: UseCase, names: Sequence[str]) -> list[str]:
        """Requested names → model input columns; empty means all.

        A name is a column (``elevel__2``), a spec feature (``elevel`` → its one-hot
        columns) or either prefixed by the view (``loan_approval:loan_mean_10m``).
        """
        inputs = uc.model_inputs()
        if not names:
            return inputs
        by_feature: dict[str, list[str]] = {}
        for f in uc.features.row:
            if f.transform == "one_hot":
                by_feature[f.name] = [f"{f.name}__{c}" for c in uc.fields[f.source].enum or ()]
        known = set(inputs)
        out: list[str] = []
        for i, raw in enumerate(names):
            view, _, name = raw.rpartition(":")
            if view and view != uc.name:
                raise InvalidArgument(f"feature_names[{i}]", f"unknown feature view {view!r} in {raw!r}")
            if name in known:
                cols = [name]
            elif name in by_feature:
                cols = by_feature[name]
            else:
                raise InvalidArgument(
                    f"feature_names[{i}]", f"unknown feature {raw!r} of use case {uc.name!r}"
                )
            out += [c for c in cols if c not in out]
        return out

    def read(self, uc: UseCase, entity_ids: Sequence[str], columns: Sequence[str]) -> list[OnlineRow]:
        """One row per requested entity id, in request order (blocking: call from a thread)."""
        unique = list(dict.fromkeys(entity_ids))
        if not unique:
            return []
        key = uc.entity.field
        with self._lock:
            response = self._store.get_online_features(
                features=[f"{uc.name}:{c}" for c in [*columns, RECORD_ID]],
                entity_rows=[{key: e} for e in unique],
            ).proto
        names = list(response.metadata.feature_names.val)
        vectors = dict(zip(names, response.results, strict=True))
        rows: dict[str, OnlineRow] = {}
        for i, entity in enumerate(unique):
            # Every row written carries its record id; its presence is what "found" means.
            # (Feast's statuses cannot say it: its Redis store reports PRESENT with an empty
            # value for an unknown entity, and drops the values when none is known.)
            record_id = _string(vectors[RECORD_ID], i)
            found = bool(record_id)
            values: dict[str, float | None] = {}
            newest: int | None = None
            for c in columns:
                vec = vectors[c]
                number = _double(vec, i) if found else None
                values[c] = None if number is None or math.isnan(number) else number
                if found and len(vec.event_timestamps) > i and vec.statuses[i] in (_PRESENT, _NULL_VALUE):
                    ts = vec.event_timestamps[i]
                    us = ts.seconds * 1_000_000 + ts.nanos // 1000
                    if us:
                        newest = us if newest is None else max(newest, us)
            rows[entity] = OnlineRow(entity, values, found, newest, record_id)
        return [rows[e] for e in entity_ids]
