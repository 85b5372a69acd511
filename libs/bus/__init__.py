"""The event bus over aiokafka: typed protobuf events with standard headers.

>>> async with EventPublisher(bootstrap, producer="trainer") as pub:
...     await pub.publish(topics.MODEL_TRAINED, event, use_case="loan", key="loan")

Consumers subscribe with :class:`EventConsumer`, which commits only after the
handler's effect and dead-letters what it cannot handle. A compressed batch or record that
would inflate past the caps of :mod:`libs.bus.compression` is skipped unbuffered.
"""

from __future__ import annotations

from libs.bus import compression, topics
from libs.bus.consumer import Event, EventConsumer
from libs.bus.deadletter import DeadLetters
from libs.bus.headers import EventMeta
from libs.bus.producer import EventPublisher, EventSink, Outgoing
from libs.bus.security import KafkaSecurity

# Every process of the factory imports libs.bus: from here on each of its aiokafka consumers,
# ours, faust's and those built directly (the catalogue follower, the registry's), inflates
# a compressed batch only up to the caps (the defaults until a service installs its settings').
compression.ensure_installed()

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
