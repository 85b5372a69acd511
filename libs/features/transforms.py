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


_INFINITIES = (math.inf, -math.inf)


def to_number(value: Any, field: str = "value") -> float | None:
    """A field value as a float; None for null or NaN; :class:`FeatureError` for non-numbers."""
    kind = type(value)
    if kind is float:  # the common case first: the stream calls this for every source value
        if value != value:  # NaN
            return None
        if value in _INFINITIES:
            raise FeatureError(f"{field}: {value!r} is not a finite number")
        return value  # type: ignore[no-any-return]
    if kind is int:
        return float(value)
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


# A group of columns computed together: its names, and a function of the record that
# returns their values (one value for most transforms, one per category for one-hot).
Group = tuple[list[str], Callable[[Mapping[str, Any]], list[float | None]]]


def _one_hot(src: str, categories: list[Any]) -> Callable[[Mapping[str, Any]], list[float | None]]:
    """All of a field's one-hot columns at once, with ``_same_category``'s matching: a text
    value matches a category whose text is equal; a number matches a numeric category of
    equal value, or a text category equal to its text."""
    by_text: dict[str, list[int]] = {}
    text_only: dict[str, list[int]] = {}
    by_number: dict[float, list[int]] = {}
    for i, category in enumerate(categories):
        by_text.setdefault(str(category), []).append(i)
        if isinstance(category, str):
            text_only.setdefault(category, []).append(i)
        else:
            by_number.setdefault(float(category), []).append(i)
    width = len(categories)

    def hot(r: Mapping[str, Any]) -> list[float | None]:
        out: list[float | None] = [0.0] * width
        v = r.get(src)
        if v is None:
            return out
        if isinstance(v, str):
            hits = by_text.get(v, ())
        else:
            hits = [
                *(by_number.get(float(v), ()) if by_number else ()),
                *(text_only.get(str(v), ()) if text_only else ()),
            ]
        for i in hits:
            out[i] = 1.0
        return out

    return hot


def _groups(uc: UseCase) -> list[Group]:
    groups: list[Group] = []
    for f in uc.features.row:
        src = f.source
        if f.transform == "identity":

            def identity(r: Mapping[str, Any], s: str = src) -> list[float | None]:
                return [to_number(r.get(s), s)]

            groups.append(([f.name], identity))
        elif f.transform == "log1p":

            def log1p(r: Mapping[str, Any], s: str = src) -> list[float | None]:
                x = to_number(r.get(s), s)
                return [None if x is None or x <= -1 else math.log1p(x)]

            groups.append(([f.name], log1p))
        elif f.transform == "ratio":

            def ratio(r: Mapping[str, Any], s: str = src, o: str = f.other or "") -> list[float | None]:
                num, den = to_number(r.get(s), s), to_number(r.get(o), o)
                if num is None or den is None:
                    return [None]
                return [0.0 if den == 0 else num / den]

            groups.append(([f.name], ratio))
        else:  # one_hot
            categories = list(uc.fields[src].enum or ())
            groups.append(([f"{f.name}__{c}" for c in categories], _one_hot(src, categories)))
    return groups


class RowPlan:
    """The row transforms of a use case, compiled once: ``plan(fields)`` → values in column order."""

    def __init__(self, uc: UseCase) -> None:
        self._groups = _groups(uc)
        self._fns = [fn for _, fn in self._groups]
        self.names = [name for names, _ in self._groups for name in names]

    def __call__(self, fields: Mapping[str, Any]) -> list[float | None]:
        out: list[float | None] = []
        for fn in self._fns:
            out += fn(fields)
        return out


def row_features(uc: UseCase, fields: Mapping[str, Any]) -> dict[str, float | None]:
    """The row features of one record, by model input column (one-hot expanded)."""
    plan = RowPlan(uc)
    return dict(zip(plan.names, plan(fields), strict=True))
