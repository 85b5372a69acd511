"""Why a record is rejected: one :class:`Violation` per broken rule, with a stable code.

Record-level codes (``field`` is empty) come from decoding; field-level ones from
the data contract. Codes are part of the contract with producers: they appear in the
dead-letter topic, in gRPC answers and in quality metrics, so they never change.
"""

from __future__ import annotations

from dataclasses import dataclass

# Record-level: the payload could not be turned into a candidate record.
PARSE = "parse"  # not JSON, or not a valid protobuf Record
ENCODING = "encoding"  # not UTF-8
TOO_LARGE = "too_large"  # over the payload size cap
NOT_OBJECT = "not_object"  # JSON, but not an object
USE_CASE = "use_case"  # a protobuf Record naming another use case
INTERNAL = "internal"  # a bug in ingestion; the record is kept in the dead-letter topic

# Field-level: the data contract of the use case.
REQUIRED = "required"  # missing, null, or an empty entity key
TYPE = "type"  # not of the field's type, even after the documented coercions
RANGE = "range"  # below min or above max
ENUM = "enum"  # not one of the allowed values
MAX_LENGTH = "max_length"  # string longer than max_length
UNKNOWN_FIELD = "unknown_field"  # not declared in the schema
FUTURE = "future"  # event time further ahead than event_time.max_future_skew

RECORD_LEVEL = frozenset({PARSE, ENCODING, TOO_LARGE, NOT_OBJECT, USE_CASE, INTERNAL})
# Codes that count as "out of range" in quality reports.
OUT_OF_RANGE = frozenset({RANGE, ENUM, MAX_LENGTH})


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: ``field`` ("" for the whole record), a code above, and why."""

    field: str
    code: str
    message: str


class Malformed(Exception):
    """The payload is not a record at all (record-level violation)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.violation = Violation("", code, message)
