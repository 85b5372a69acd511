"""Bytes from a producer → a candidate record (a plain dict), or a record-level violation.

Two wire formats are accepted:

- JSON (the default, what most producers send): one UTF-8 JSON object per message.
  Not UTF-8 → ``encoding``; not JSON, or NaN/Infinity (not JSON, though Python's
  parser allows them), or nesting too deep → ``parse``; valid JSON that is not an
  object (an array, a number, ...) → ``not_object``.
- Protobuf: an ``aifactory.common.v1.Record`` when the message's ``content-type``
  is ``application/x-protobuf`` (or ``application/protobuf``). ``Record.event_time``
  and ``Record.entity_id`` fill the use case's event-time and entity fields when the
  ``fields`` map does not carry them; ``Record.record_id`` is the record id.

Either way a payload larger than the cap is refused (``too_large``) before parsing,
so a huge message costs nothing but its read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from google.protobuf.message import DecodeError

from aifactory.common.v1 import common_pb2
from services.ingestion.violations import ENCODING, NOT_OBJECT, PARSE, TOO_LARGE, USE_CASE, Malformed

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
_PROTOBUF_TYPES = frozenset({PROTOBUF, "application/protobuf", "application/vnd.google.protobuf"})

DEFAULT_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Candidate:
    """A decoded but not yet validated record."""

    values: dict[str, Any]
    # The record id carried by a protobuf Record (JSON carries it in ``values``).
    record_id: str | None = None


def media_type(content_type: str | bytes | None) -> str:
    """``application/x-protobuf`` or ``application/json`` for a content-type header."""
    if content_type and len(content_type) > 128:
        return JSON  # a producer's header, bounded before any parsing: no media type is this long
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    if content_type and content_type.split(";", 1)[0].strip().lower() in _PROTOBUF_TYPES:
        return PROTOBUF
    return JSON


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_size(payload: bytes, max_bytes: int) -> None:
    if len(payload) > max_bytes:
        raise Malformed(TOO_LARGE, f"payload is {len(payload)} bytes; the limit is {max_bytes}")


def decode_json(payload: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Candidate:
    """A JSON object → candidate; raises :class:`Malformed` for anything else."""
    _check_size(payload, max_bytes)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(ENCODING, f"payload is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        # The message names a position, never the content (it may be personal data).
        reason = str(exc).split(":", 1)[0] if not isinstance(exc, RecursionError) else "nested too deep"
        raise Malformed(PARSE, f"payload is not JSON: {reason}") from None
    if not isinstance(value, dict):
        raise Malformed(NOT_OBJECT, f"payload is a JSON {_json_kind(value)}, not an object")
    return Candidate(value)


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _from_value(value: common_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    return getattr(value, kind)


def record_to_candidate(
    record: common_pb2.Record, use_case: str, entity_field: str, event_time_field: str
) -> Candidate:
    """A protobuf Record → candidate; its envelope fills the entity and event-time fields."""
    if record.use_case and record.use_case != use_case:
        raise Malformed(USE_CASE, f"record is for use case {record.use_case!r}, not {use_case!r}")
    values = {name: _from_value(v) for name, v in record.fields.items()}
    if record.entity_id and entity_field not in values:
        values[entity_field] = record.entity_id
    if record.HasField("event_time") and event_time_field not in values:
        try:
            values[event_time_field] = record.event_time.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError, OSError):
            # Outside the Timestamp range (or negative nanos): kept as text, so the contract
            # rejects it as a type violation naming the field instead of failing the batch.
            values[event_time_field] = (
                f"timestamp(seconds={record.event_time.seconds}, nanos={record.event_time.nanos})"
            )
    return Candidate(values, record.record_id or None)


def decode_protobuf(
    payload: bytes,
    use_case: str,
    entity_field: str,
    event_time_field: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Candidate:
    """Serialized ``aifactory.common.v1.Record`` → candidate; raises :class:`Malformed`."""
    _check_size(payload, max_bytes)
    record = common_pb2.Record()
    try:
        record.ParseFromString(payload)
    except DecodeError as exc:
        raise Malformed(PARSE, f"payload is not an aifactory.common.v1.Record: {exc}") from None
    return record_to_candidate(record, use_case, entity_field, event_time_field)
