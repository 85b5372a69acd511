"""The dead-letter helper: keeps the original bytes and headers, adds the reason."""

from __future__ import annotations

import logging
from typing import Protocol

from aiokafka import ConsumerRecord

from libs.bus import headers as h

log = logging.getLogger(__name__)

# The error code (header aif-dlq-error) of an event whose handler kept raising Unavailable
# past the consumer's retry policy: the event may well be fine; replay it once the
# dependency named in the reason is back.
RETRIES_EXHAUSTED = "retries-exhausted"


class _RawSender(Protocol):
    async def send_raw(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: list[tuple[str, bytes]] = ...
    ) -> None: ...


class DeadLetters:
    """Sends records that cannot be handled to ``topic`` with why, so none is dropped silently."""

    def __init__(self, publisher: _RawSender, topic: str) -> None:
        self._publisher = publisher
        self.topic = topic

    async def send(self, record: ConsumerRecord, reason: str, error: str, group: str = "") -> None:
        headers = [(k, v or b"") for k, v in (record.headers or ()) if not k.startswith("aif-dlq-")]
        headers += [
            (h.DLQ_REASON, reason.encode("utf-8", "replace")[:4096]),
            (h.DLQ_ERROR, error.encode()),
            (h.DLQ_SOURCE, f"{record.topic}/{record.partition}/{record.offset}".encode()),
            (h.DLQ_GROUP, group.encode()),
        ]
        await self._publisher.send_raw(self.topic, record.value or b"", key=record.key, headers=headers)
        log.warning("dead-lettered %s/%d/%d: %s", record.topic, record.partition, record.offset, reason)
