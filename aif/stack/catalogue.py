"""A use-case catalogue for services run without their registry (benchmarks, one-service tests).

A factory onboards use cases through its registry (``aif usecase apply``,
:meth:`aif.stack.Stack.apply_usecases`). A service started alone still learns them the
only way services do, from the catalogue topic: :func:`seed_catalogue` writes entries
there exactly as the registry publishes them (``UseCaseChanged``, keyed by use case), on
a topic of the caller's (``AIF_USECASES_TOPIC``), so nothing else on the broker sees them.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterable
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.common.v1 import common_pb2
from aifactory.registry.v1 import events_pb2 as registry_events
from libs.bus import EventPublisher, Outgoing, topics
from libs.bus.admin import ensure_catalogue_topic
from libs.usecase import DEFAULT_DIR, load_usecase, spec_files


def new_topic(prefix: str = "test") -> str:
    """A catalogue topic name of one's own."""
    return f"{prefix}.usecases.{uuid.uuid4().hex[:10]}"


async def seed_catalogue(
    bootstrap: str, topic: str = topics.USECASES, files: Iterable[Path] | None = None
) -> list[str]:
    """Publish ``files`` (default: the shipped specs) as active catalogue entries on
    ``topic`` (created compacted when missing); returns their names."""
    paths = list(files) if files is not None else spec_files(DEFAULT_DIR)
    await ensure_catalogue_topic(bootstrap, topic)
    now = Timestamp()
    now.GetCurrentTime()
    events = []
    for path in paths:
        spec = load_usecase(path)
        text = path.read_text(encoding="utf-8")
        event = registry_events.UseCaseChanged(
            use_case=spec.name,
            version=spec.version,
            state=registry_events.USE_CASE_STATE_ACTIVE,
            spec_yaml=text,
            spec_sha256=hashlib.sha256(text.encode()).hexdigest(),
            actor=common_pb2.Actor(subject="seed_catalogue", roles=["admin"]),
            changed_at=now,
            reason="seeded for a service run without its registry",
        )
        events.append(Outgoing(topic, event, use_case=spec.name, key=spec.name))
    async with EventPublisher(bootstrap, producer="seed-catalogue") as publisher:
        await publisher.publish_many(events)
    return [e.use_case for e in events]


def seed_catalogue_sync(
    bootstrap: str, topic: str = topics.USECASES, files: Iterable[Path] | None = None
) -> list[str]:
    """:func:`seed_catalogue` from code without an event loop."""
    return asyncio.run(seed_catalogue(bootstrap, topic, files))


__all__ = ["new_topic", "seed_catalogue", "seed_catalogue_sync"]
