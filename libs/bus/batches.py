"""Many events in one Kafka message, built from events already encoded.

A batch contract is a message whose only field is ``repeated <Event> <name> = 1`` (for
example ``aifactory.ingestion.v1.RecordAcceptedBatch``). On the wire that is each
event's bytes behind the field's tag and their length, so a producer holding every
event encoded (to size it, or to send it alone) builds the batch by concatenation and
decodes nothing. Why batch at all: a consumer's cost per Kafka message (fetch
bookkeeping, delivery, acks) is then paid once per batch.
"""
from __future__ import annotations

from collections.abc import Sequence

from libs.bus.wire import varint

# Field 1, wire type 2 (length-delimited): (1 << 3) | 2.
_FIELD_1 = b"\x0a"


def framed_size(encoded: bytes) -> int:
    """Bytes one encoded event takes inside a batch."""
    return len(_FIELD_1) + len(varint(len(encoded))) + len(encoded)


def pack(encoded: Sequence[bytes]) -> bytes:
    """The batch message (``repeated <Event> = 1``) holding ``encoded`` in order."""
    parts: list[bytes] = []
    for event in encoded:
        parts += (_FIELD_1, varint(len(event)), event)
    return b"".join(parts)
