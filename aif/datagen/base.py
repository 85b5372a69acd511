"""What a generator yields, and how a record becomes the JSON a producer sends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Example:
    """One record, its label, and when that label is observed."""

    record: dict[str, Any]
    record_id: str
    entity_id: str
    event_time: datetime
    label: Any
    label_time: datetime
    # True once the generator's concept has drifted (for measuring detection delay).
    drifted: bool = False


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def to_json(record: dict[str, Any]) -> bytes:
    """The record as a producer sends it: JSON, timestamps in ISO 8601."""
    return json.dumps(record, default=_default, separators=(",", ":")).encode()
