"""Features → the model's INPUT row, and the model's OUTPUT row → named values.

The model contract: INPUT is float32 ``[batch, len(uc.model_inputs())]`` in
``uc.model_inputs()`` order, NaN for a missing value; OUTPUT is the class
probabilities (order ``uc.label.classes``) or ``[batch, 1]`` for regression.

Inline one-hot features may be given either way (decided here, documented in the
README): the raw categorical value under the feature's name (``elevel: 2``, expanded
to ``elevel__0..elevel__4``), or the expanded columns themselves. Giving both for the
same feature is an error, as is a value outside the field's enum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from aifactory.common.v1 import common_pb2
from libs.errors import InvalidArgument
from libs.usecase import UseCase

Scalar = float | int | str | bool | None

# A feature present with no value (null_value or an unset Value) means "missing": NaN.
MISSING = None


def from_value(value: common_pb2.Value) -> Scalar:
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return MISSING
    return getattr(value, kind)  # type: ignore[no-any-return]


def to_value(value: Scalar) -> common_pb2.Value:
    if value is None:
        return common_pb2.Value(null_value=0)
    if isinstance(value, bool):
        return common_pb2.Value(bool_value=value)
    if isinstance(value, int):
        return common_pb2.Value(int64_value=value)
    if isinstance(value, float):
        return common_pb2.Value(double_value=value)
    return common_pb2.Value(string_value=str(value))


@dataclass(frozen=True, slots=True)
class Input:
    """One prediction input: an entity (its features fetched online), inline features, or both."""

    entity_id: str
    features: Mapping[str, Scalar]


@dataclass(frozen=True)
class _OneHot:
    name: str
    categories: tuple[object, ...]
    columns: tuple[int, ...]


class InputSchema:
    """How one use case's features become its model's input row."""

    def __init__(self, uc: UseCase) -> None:
        self.use_case = uc.name
        self.columns: list[str] = uc.model_inputs()
        self.index = {c: i for i, c in enumerate(self.columns)}
        self.width = len(self.columns)
        self.one_hot: dict[str, _OneHot] = {}
        for f in uc.features.row:
            if f.transform == "one_hot":
                cats = tuple(uc.fields[f.source].enum or ())
                self.one_hot[f.name] = _OneHot(
                    f.name, cats, tuple(self.index[f"{f.name}__{c}"] for c in cats)
                )
        # Expanded column → its one-hot feature, to catch "raw and expanded both given".
        self._expanded = {self.columns[i]: oh.name for oh in self.one_hot.values() for i in oh.columns}
        self.task = uc.task
        self.classes: list[Scalar] = list(uc.label.classes or ())
        self.n_outputs = 1 if uc.task == "regression" else len(self.classes)

    # -- features → row -----------------------------------------------------------------

    def row(
        self, features: Mapping[str, Scalar], *, field: str = "features", require_all: bool = True
    ) -> np.ndarray:
        """One float32 row; raises InvalidArgument naming ``field.<name>`` on bad input."""
        out = np.full(self.width, np.nan, dtype=np.float32)
        seen = np.zeros(self.width, dtype=bool)
        for name, value in features.items():
            col = self.index.get(name)
            if col is not None:
                owner = self._expanded.get(name)
                if owner is not None and owner in features:
                    raise InvalidArgument(
                        f"{field}.{name}", f"give {owner!r} or its expanded columns, not both"
                    )
                out[col] = self._number(value, f"{field}.{name}")
                seen[col] = True
            elif name in self.one_hot:
                oh = self.one_hot[name]
                seen[list(oh.columns)] = True
                if value is None:
                    continue  # missing category: every column NaN
                match = [i for c, i in zip(oh.categories, oh.columns, strict=True) if same_category(c, value)]
                if not match:
                    raise InvalidArgument(f"{field}.{name}", f"{value!r} is not one of {list(oh.categories)}")
                out[list(oh.columns)] = 0.0
                out[match[0]] = 1.0
            else:
                raise InvalidArgument(f"{field}.{name}", f"not a model input of {self.use_case}")
        if require_all and not seen.all():
            missing = self.columns[int(np.argmin(seen))]
            owner = self._expanded.get(missing, missing)
            raise InvalidArgument(f"{field}.{owner}", "missing (send null for an unknown value)")
        return out

    def merge(self, fetched: Mapping[str, Scalar] | None, inline: Mapping[str, Scalar]) -> dict[str, Scalar]:
        """Fetched features (the model inputs among them) with the inline ones over them: an
        inline one-hot value replaces the fetched expanded columns of its feature."""
        values: dict[str, Scalar] = {}
        if fetched is not None:
            values = {k: v for k, v in fetched.items() if k in self.index}
            for name in self.one_hot:  # a raw category fetched: kept unless its columns came too
                if name in fetched and not any(self.columns[i] in values for i in self.one_hot[name].columns):
                    values[name] = fetched[name]
        for name in inline:
            if name in self.one_hot:
                for col in self.one_hot[name].columns:
                    values.pop(self.columns[col], None)
        values.update(inline)
        return values

    def complete(self, features: Mapping[str, object]) -> bool:
        """Whether ``features`` give every model input (directly or as a raw one-hot value)."""
        covered = sum(1 for name in features if name in self.index)
        covered += sum(len(self.one_hot[name].columns) for name in features if name in self.one_hot)
        return covered >= self.width

    @staticmethod
    def _number(value: Scalar, field: str) -> float:
        if value is None:
            return math.nan
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if isinstance(value, int | float):
            number = float(value)
            if math.isinf(number):
                raise InvalidArgument(field, "must be finite")
            return number
        raise InvalidArgument(field, f"expected a number, got {type(value).__name__} {value!r}")

    # -- output row → values ------------------------------------------------------------

    def outputs(self, row: np.ndarray) -> tuple[Scalar, dict[str, Scalar]]:
        """The primary output and every named output of one OUTPUT row.

        Binary: P(classes[1]); multiclass: the most likely class; regression: the value.
        Named: ``p_<class>`` per class and ``label`` (the most likely class), or ``value``.
        """
        if self.task == "regression":
            value = float(row[0])
            return value, {"value": value}
        named: dict[str, Scalar] = {f"p_{c}": float(p) for c, p in zip(self.classes, row, strict=False)}
        label = self.classes[int(np.argmax(row))] if len(row) else None
        named["label"] = label
        primary: Scalar = float(row[1]) if self.task == "binary" else label
        return primary, named


def same_category(category: object, value: object) -> bool:
    """Enum categories are compared as the spec types them, with "2" == 2 for int enums."""
    if isinstance(category, bool) or isinstance(value, bool):
        return category is value
    if isinstance(category, int) and isinstance(value, float):
        return value.is_integer() and int(value) == category
    if isinstance(category, int) and isinstance(value, str):
        digits = value.strip().lstrip("-")
        # ASCII only: "²".isdigit() is True and int("²") raises.
        return digits.isascii() and digits.isdigit() and int(value) == category
    return category == value
