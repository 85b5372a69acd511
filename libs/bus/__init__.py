"""The event bus over aiokafka: typed protobuf events with standard headers.

>>> async with EventPublisher(bootstrap, producer="trainer") as pub:
...     await pub.publish(topics.MODEL_TRAINED, event, use_case="loan", key="loan")

Consumers subscribe with :class:`EventConsumer`, which commits only after the
handler's effect and dead-letters what it cannot handle.
"""

from __future__ import annotations

from libs.bus import topics
from libs.bus.consumer import Event, EventConsumer
from libs.bus.deadletter import DeadLetters
from libs.bus.headers import EventMeta
from libs.bus.producer import EventPublisher, EventSink, Outgoing
from libs.bus.security import KafkaSecurity

__all__ = [
    "DeadLetters",
    "Event",
    "EventConsumer",
    "EventMeta",
    "EventPublisher",
    "EventSink",
    "KafkaSecurity",
    "Outgoing",
    "topics",
]
