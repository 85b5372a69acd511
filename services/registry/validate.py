"""Input checks shared by the core and the servicer: each error names its field."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from libs.errors import InvalidArgument
from services.registry.domain import Metric

USE_CASE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
# Also a folder name in Triton's model repository: no slashes, no leading dot.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def use_case(value: str, field: str = "use_case") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not USE_CASE.match(value):
        raise InvalidArgument(field, f"{value!r} is not a use case name ([a-z][a-z0-9_]*, at most 48)")
    return value


def model_name(value: str, field: str = "model_name") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not MODEL_NAME.match(value):
        raise InvalidArgument(field, f"{value!r} is not a model name (letters, digits, _ . -; at most 128)")
    return value


def alias(value: str, field: str = "alias") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not ALIAS.match(value):
        raise InvalidArgument(field, f"{value!r} is not an alias name ([a-z][a-z0-9_-]*, at most 64)")
    return value


def version(value: int, field: str = "version") -> int:
    if value <= 0:
        raise InvalidArgument(field, "must be a version number (1 or more)")
    return value


def ident(value: str, field: str, *, required: bool = True) -> str:
    if not value:
        if required:
            raise InvalidArgument(field, "is required")
        return value
    if not IDENT.match(value):
        raise InvalidArgument(field, f"{value!r} is not a valid id (letters, digits, _ . : -; at most 128)")
    return value


def metrics(items: Sequence[Metric], field: str = "metrics") -> None:
    for i, m in enumerate(items):
        if not m.name:
            raise InvalidArgument(f"{field}[{i}].name", "is required")
        if not math.isfinite(m.value):
            raise InvalidArgument(f"{field}[{i}].value", f"must be finite, got {m.value}")
        if m.step < 0:
            raise InvalidArgument(f"{field}[{i}].step", "must not be negative")
