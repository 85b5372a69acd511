"""The data contract of a use case, checked on one candidate record.

:meth:`Contract.check` returns every violation at once (a producer fixes a record in
one round trip), and the typed values of an accepted record.

Type rules (what a JSON producer may send for each declared type):

========= ===================================================================
string    a JSON string only (a number is not silently turned into text)
int       an integer; a float with an integral value (``3.0``, as JavaScript
          writes it); a string of decimal digits with an optional sign
          (``"3"``, ``"-12"``). Not ``true``, ``3.5``, ``"3.5"`` or ``" 3"``.
          Must fit in 64 bits.
float     an integer or a float; a decimal string (``"3.14"``, ``"1e3"``).
          Never NaN or an infinity (``1e999`` overflows to one: refused).
bool      ``true``/``false``; the integers ``0``/``1``; the strings
          ``"true"``/``"false"``/``"1"``/``"0"`` (any case).
timestamp an ISO-8601 string (``2026-01-01T09:30:00Z``, ``...+02:00``; without an
          offset it is taken as UTC) or a number of milliseconds since the Unix
          epoch. Stored in UTC.
========= ===================================================================

``null`` and a missing key mean the same: no value (a ``required`` violation when
the field is required). The key ``record_id`` is reserved for the producer's record
id (a non-empty string or an integer) unless the schema declares a field of that
name (then it is a field and, when set, the id too); any other undeclared key is an ``unknown_field`` violation. The entity key
must be present and non-empty; the event time may not be further in the future than
``event_time.max_future_skew``.

Messages never echo the value of a personal-data field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from libs.usecase import FieldSpec, UseCase
from services.ingestion.violations import (
    ENUM,
    FUTURE,
    MAX_LENGTH,
    RANGE,
    REQUIRED,
    TYPE,
    UNKNOWN_FIELD,
    Violation,
)

RECORD_ID_KEY = "record_id"
MAX_RECORD_ID_LENGTH = 256
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_INT = re.compile(r"^[+-]?\d{1,19}$")
_FLOAT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_BOOL_STRINGS = {"true": True, "false": False, "1": True, "0": False}


class _Mismatch(Exception):
    """The value is not of the field's type; the message says what it is."""


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, datetime):
        return "a timestamp"
    return type(value).__name__


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _Mismatch(f"expected a string, got {_kind(value)}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Mismatch("expected an integer, got a boolean")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str) and _INT.match(value):
        result = int(value)
    else:
        raise _Mismatch(
            f"expected an integer, got {_kind(value)}"
            + (" with a fraction" if isinstance(value, float | str) else "")
        )
    if not INT64_MIN <= result <= INT64_MAX:
        raise _Mismatch("integer does not fit in 64 bits")
    return result


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Mismatch("expected a number, got a boolean")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str) and _FLOAT.match(value):
        result = float(value)
    else:
        raise _Mismatch(f"expected a number, got {_kind(value)}")
    if not math.isfinite(result):
        raise _Mismatch("number is not finite")
    return result


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _BOOL_STRINGS:
        return _BOOL_STRINGS[value.lower()]
    raise _Mismatch(f"expected a boolean, got {_kind(value)}")


def _to_timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, str):
        try:
            result = datetime.fromisoformat(value)
        except ValueError:
            raise _Mismatch(
                "expected an ISO-8601 timestamp or epoch milliseconds, got a string that is neither"
            ) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            result = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, ValueError, OSError):
            raise _Mismatch("epoch milliseconds out of range") from None
    else:
        raise _Mismatch(f"expected a timestamp, got {_kind(value)}")
    if result.tzinfo is None:
        return result.replace(tzinfo=UTC)
    try:
        return result.astimezone(UTC)
    except OverflowError:
        raise _Mismatch("timestamp out of range") from None


COERCE: dict[str, Callable[[Any], Any]] = {
    "string": _to_string,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "timestamp": _to_timestamp,
}


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of a contract check on one candidate."""

    # Typed value of every declared field (None: missing or null).
    values: dict[str, Any]
    violations: list[Violation]
    record_id: str | None = None
    entity_id: str | None = None
    event_time: datetime | None = None
    # Declared fields that were missing or null (for quality reports).
    nulls: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.violations


def _short(name: str, limit: int = 64) -> str:
    return name if len(name) <= limit else name[:limit] + "..."


class Contract:
    """The compiled data contract of one use case."""

    def __init__(self, usecase: UseCase) -> None:
        self.usecase = usecase
        self._fields: list[tuple[str, FieldSpec, Callable[[Any], Any], frozenset[Any] | None]] = [
            (name, spec, COERCE[spec.type], frozenset(spec.enum) if spec.enum else None)
            for name, spec in usecase.fields.items()
        ]
        self._declared = frozenset(usecase.fields)
        self._reserved_id = RECORD_ID_KEY not in usecase.fields
        self._entity = usecase.entity.field
        self._event_time = usecase.event_time.field
        self._skew: timedelta = usecase.event_time.max_future_skew
        self._pii = frozenset(usecase.pii_fields())

    def _show(self, name: str, value: Any) -> str:
        if name in self._pii:
            return "value"
        # Cut before repr: a megabyte-long string costs what a short one does.
        text = repr(value[:41] if isinstance(value, str) else value)
        return text if len(text) <= 40 else text[:40] + "..."

    def check(
        self, values: Mapping[str, Any], now: datetime | None = None, record_id: str | None = None
    ) -> Checked:
        """Every violation of ``values``; typed values, entity id and event time when accepted."""
        violations: list[Violation] = []
        rid = record_id
        for key in values:
            if key not in self._declared:
                if key == RECORD_ID_KEY and self._reserved_id:
                    continue
                violations.append(
                    Violation(
                        _short(key, 128),
                        UNKNOWN_FIELD,
                        f"{_short(key)!r} is not a field of {self.usecase.name}",
                    )
                )
        if self._reserved_id and RECORD_ID_KEY in values:
            raw = values[RECORD_ID_KEY]
            if isinstance(raw, int) and not isinstance(raw, bool):
                raw = str(raw)
            if isinstance(raw, str) and 0 < len(raw) <= MAX_RECORD_ID_LENGTH:
                rid = rid or raw
            else:
                violations.append(
                    Violation(
                        RECORD_ID_KEY,
                        TYPE,
                        "record_id must be a non-empty string "
                        f"of at most {MAX_RECORD_ID_LENGTH} characters or an integer",
                    )
                )
        out: dict[str, Any] = {}
        nulls: list[str] = []
        for name, spec, coerce, enum in self._fields:
            raw = values.get(name)
            if raw is None:
                out[name] = None
                nulls.append(name)
                if spec.required:
                    violations.append(Violation(name, REQUIRED, f"{name} is required"))
                continue
            try:
                value = coerce(raw)
            except _Mismatch as exc:
                out[name] = None
                violations.append(Violation(name, TYPE, f"{name}: {exc}"))
                continue
            out[name] = value
            if spec.min is not None and value < spec.min:
                violations.append(
                    Violation(
                        name, RANGE, f"{name} {self._show(name, value)} is below the minimum {spec.min:g}"
                    )
                )
            elif spec.max is not None and value > spec.max:
                violations.append(
                    Violation(
                        name, RANGE, f"{name} {self._show(name, value)} is above the maximum {spec.max:g}"
                    )
                )
            if enum is not None and value not in enum:
                allowed = ", ".join(map(str, spec.enum or ()))
                violations.append(
                    Violation(name, ENUM, f"{name} {self._show(name, value)} is not one of [{allowed[:200]}]")
                )
            if spec.type == "string" and len(value) > spec.max_length:
                violations.append(
                    Violation(
                        name,
                        MAX_LENGTH,
                        f"{name} has {len(value)} characters; at most {spec.max_length} are allowed",
                    )
                )
        if not self._reserved_id and out.get(RECORD_ID_KEY) not in (None, ""):
            rid = rid or str(out[RECORD_ID_KEY])  # a declared record_id field is also the id
        entity = out.get(self._entity)
        entity_id = None
        if entity is not None:
            entity_id = str(entity)
            if not entity_id.strip():
                violations.append(
                    Violation(self._entity, REQUIRED, f"{self._entity} (the entity key) is empty")
                )
        event_time = out.get(self._event_time)
        if event_time is not None:
            now = now or datetime.now(UTC)
            if event_time > now + self._skew:
                violations.append(
                    Violation(
                        self._event_time,
                        FUTURE,
                        f"{self._event_time} is {(event_time - now).total_seconds():.0f}s in the future; "
                        f"at most {self._skew.total_seconds():.0f}s is tolerated",
                    )
                )
        return Checked(out, violations, rid, entity_id, event_time, nulls)
