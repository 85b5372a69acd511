"""Kafka headers every event carries (ARCHITECTURE.md, "Contracts")."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

EVENT_ID = "aif-event-id"
EVENT_TYPE = "aif-event-type"
SCHEMA_VERSION = "aif-schema-version"
USE_CASE = "aif-use-case"
PRODUCER = "aif-producer"
PRODUCED_AT = "aif-produced-at-ms"
CONTENT_TYPE = "content-type"
# On a batch message (many events in one): how many it holds.
BATCH_SIZE = "aif-batch-size"
PROTOBUF = "application/x-protobuf"
# Added to dead-lettered records next to the original headers.
DLQ_REASON = "aif-dlq-reason"
DLQ_ERROR = "aif-dlq-error"
DLQ_SOURCE = "aif-dlq-source"  # topic/partition/offset of the original record
DLQ_GROUP = "aif-dlq-consumer-group"


@dataclass(frozen=True)
class EventMeta:
    """The metadata of one event; ``event_id`` is the idempotency key."""

    event_id: str
    event_type: str
    schema_version: str
    use_case: str
    producer: str
    produced_at_ms: int
    traceparent: str | None = None

    @staticmethod
    def new(
        event_type: str, schema_version: str, use_case: str, producer: str, event_id: str | None = None
    ) -> EventMeta:
        return EventMeta(
            event_id=event_id or uuid.uuid4().hex,
            event_type=event_type,
            schema_version=schema_version,
            use_case=use_case,
            producer=producer,
            produced_at_ms=int(time.time() * 1000),
        )

    def to_headers(self) -> list[tuple[str, bytes]]:
        return [
            (EVENT_ID, self.event_id.encode()),
            (EVENT_TYPE, self.event_type.encode()),
            (SCHEMA_VERSION, self.schema_version.encode()),
            (USE_CASE, self.use_case.encode()),
            (PRODUCER, self.producer.encode()),
            (PRODUCED_AT, str(self.produced_at_ms).encode()),
            (CONTENT_TYPE, PROTOBUF.encode()),
        ]

    @staticmethod
    def from_headers(headers: Iterable[tuple[str, bytes | None]]) -> EventMeta:
        """Parse the headers; raises ``KeyError`` naming the first missing one."""
        h = {k: (v or b"").decode("utf-8", "replace") for k, v in headers}
        for required in (EVENT_ID, EVENT_TYPE):
            if not h.get(required):
                raise KeyError(required)
        return EventMeta(
            event_id=h[EVENT_ID],
            event_type=h[EVENT_TYPE],
            schema_version=h.get(SCHEMA_VERSION, ""),
            use_case=h.get(USE_CASE, ""),
            producer=h.get(PRODUCER, ""),
            produced_at_ms=int(h.get(PRODUCED_AT) or 0),
            traceparent=h.get("traceparent"),
        )
