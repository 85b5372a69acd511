"""Publishing protobuf events with the standard headers and the current trace."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from libs.bus.headers import EventMeta
from libs.bus.security import KafkaSecurity
from libs.bus.types import event_type_of, schema_version_of
from libs.telemetry import headers_with_context

_tracer = trace.get_tracer("aifactory.bus")


class EventSink(Protocol):
    """What :class:`EventPublisher` offers a caller that publishes one event at a time, so
    code that only publishes can be given a fake in tests."""

    async def publish(
        self,
        topic: str,
        event: Message,
        *,
        use_case: str,
        key: str | None = None,
        event_id: str | None = None,
    ) -> Any: ...


@dataclass(frozen=True)
class Outgoing:
    """One event to publish: where, what, under which key and use case."""

    topic: str
    event: Message
    use_case: str
    key: str | None = None
    event_id: str | None = None


class EventPublisher:
    """An idempotent producer of typed events.

    ``enable_idempotence`` makes the broker drop duplicates of a retried send, and
    ``acks=all`` means a publish has returned only once the event is durable, so a
    consumer may commit its input after publishing its output.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        producer: str,
        *,
        linger_ms: int = 0,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.producer_name = producer
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=producer,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            **(security.client_kwargs() if security else {}),
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> EventPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def publish(
        self,
        topic: str,
        event: Message,
        *,
        use_case: str,
        key: str | None = None,
        event_id: str | None = None,
    ) -> EventMeta:
        """Publish one event and wait until the broker has it."""
        (meta,) = await self.publish_many([Outgoing(topic, event, use_case, key, event_id)])
        return meta

    async def publish_many(self, items: Sequence[Outgoing]) -> list[EventMeta]:
        """Publish several events in one round of sends; returns once all are durable."""
        metas: list[EventMeta] = []
        pending = []
        for item in items:
            meta = EventMeta.new(
                event_type_of(item.event),
                schema_version_of(item.event),
                item.use_case,
                self.producer_name,
                item.event_id,
            )
            with _tracer.start_as_current_span(
                f"publish {item.topic}",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": item.topic,
                    "messaging.message.id": meta.event_id,
                    "aif.event_type": meta.event_type,
                },
            ):
                headers = meta.to_headers() + headers_with_context()
                pending.append(
                    await self._producer.send(
                        item.topic,
                        item.event.SerializeToString(),
                        key=item.key.encode() if item.key is not None else None,
                        headers=headers,
                    )
                )
            metas.append(meta)
        await asyncio.gather(*pending)
        return metas

    async def send_raw(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """Publish bytes as they are (dead letters keep the original payload)."""
        await (await self._producer.send(topic, value, key=key, headers=list(headers)))
