"""Row transforms: the features one record gives on its own.

Definitions (the same in training and serving, so a model sees what it was trained on):

- ``identity``: the field as a float (bool → 1.0/0.0).
- ``log1p``: ``log(1 + x)``; null when ``x <= -1`` (undefined there).
- ``ratio``: ``source / other``; **0.0 when ``other`` is 0** (a defined, finite value a
  model can take; nulls are reserved for missing inputs); null when either is null.
- ``one_hot``: one column ``<name>__<category>`` per category of the field's enum, in
  enum order: 1.0 for the record's category, 0.0 for the others; all 0.0 when the value
  is null or not a declared category.

A null input gives a null feature (except one-hot, above). A value that is not a number
where a number is needed raises :class:`FeatureError`, naming the field.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from libs.usecase import UseCase


class FeatureError(ValueError):
    """A record's value cannot feed a feature; the message names the field."""


def to_number(value: Any, field: str = "value") -> float | None:
    """A field value as a float; None for null or NaN; :class:`FeatureError` for non-numbers."""
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number):
            raise FeatureError(f"{field}: {value!r} is not a finite number")
        return number
    raise FeatureError(f"{field}: expected a number, got {type(value).__name__}")


def _same_category(value: Any, category: Any) -> bool:
    # YAML gives ints for int enums while a record may carry 2.0; strings compare as text.
    if isinstance(value, str) or isinstance(category, str):
        return str(value) == str(category)
    return float(value) == float(category)


Column = tuple[str, Callable[[Mapping[str, Any]], float | None]]


def _columns(uc: UseCase) -> list[Column]:
    columns: list[Column] = []
    for f in uc.features.row:
        src = f.source
        if f.transform == "identity":
            columns.append((f.name, lambda r, s=src: to_number(r.get(s), s)))
        elif f.transform == "log1p":
            def log1p(r: Mapping[str, Any], s: str = src) -> float | None:
                x = to_number(r.get(s), s)
                return None if x is None or x <= -1 else math.log1p(x)
            columns.append((f.name, log1p))
        elif f.transform == "ratio":
            def ratio(r: Mapping[str, Any], s: str = src, o: str = f.other or "") -> float | None:
                num, den = to_number(r.get(s), s), to_number(r.get(o), o)
                if num is None or den is None:
                    return None
                return 0.0 if den == 0 else num / den
            columns.append((f.name, ratio))
        else:  # one_hot
            for category in uc.fields[src].enum or ():
                def hot(r: Mapping[str, Any], s: str = src, c: Any = category) -> float:
                    v = r.get(s)
                    return 1.0 if v is not None and _same_category(v, c) else 0.0
                columns.append((f"{f.name}__{category}", hot))
    return columns


class RowPlan:
    """The row transforms of a use case, compiled once: ``plan(fields)`` → values in column order."""

    def __init__(self, uc: UseCase) -> None:
        self._columns = _columns(uc)
        self.names = [name for name, _ in self._columns]

    def __call__(self, fields: Mapping[str, Any]) -> list[float | None]:
        return [fn(fields) for _, fn in self._columns]


def row_features(uc: UseCase, fields: Mapping[str, Any]) -> dict[str, float | None]:
    """The row features of one record, by model input column (one-hot expanded)."""
    plan = RowPlan(uc)
    return dict(zip(plan.names, plan(fields), strict=True))
