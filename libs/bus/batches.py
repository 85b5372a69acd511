"""Many events in one Kafka message, built from events already encoded.

A batch contract is a message whose only field is ``repeated <Event> <name> = 1`` (for
example ``aifactory.ingestion.v1.RecordAcceptedBatch``). On the wire that is each
event's bytes behind the field's tag and their length, so a producer holding every
event encoded (to size it, or to send it alone) builds the batch by concatenation and
decodes nothing. Why batch at all: a consumer's cost per Kafka message (fetch
bookkeeping, delivery, acks) is then paid once per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from libs.bus.headers import BATCH_SIZE, EVENT_ID, EVENT_TYPE
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


def member_headers(
    headers: Iterable[tuple[str, bytes | None]], member_type: str, index: int
) -> list[tuple[str, bytes]]:
    """A batch message's headers as its event ``index`` carries them alone: its own type, its
    own event id ``<batch event id>#<index>`` (stable across replays), no batch size."""
    kept = [(k, v or b"") for k, v in headers]
    batch_id = next((v for k, v in kept if k == EVENT_ID), b"")
    return [
        (EVENT_ID, batch_id + b"#" + str(index).encode()),
        (EVENT_TYPE, member_type.encode()),
        *((k, v) for k, v in kept if k not in (EVENT_TYPE, EVENT_ID, BATCH_SIZE)),
    ]
