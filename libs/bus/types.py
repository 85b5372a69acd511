"""Event type names are protobuf full names; the schema version is the package's version."""

from __future__ import annotations

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

# Only our own contracts may be decoded from the wire: a header must not be able to
# pick an arbitrary message type (descriptor_pool holds google.* ones too).
NAMESPACE = "aifactory."


def event_type_of(message: Message | type[Message]) -> str:
    return message.DESCRIPTOR.full_name


def schema_version_of(message: Message | type[Message]) -> str:
    """``aifactory.trainer.v1.TrainingRequested`` → ``v1``."""
    return message.DESCRIPTOR.file.package.rsplit(".", 1)[-1]


def message_class(event_type: str) -> type[Message]:
    """The message class registered for ``event_type``; ``KeyError`` when unknown."""
    if not event_type.startswith(NAMESPACE):
        raise KeyError(event_type)
    descriptor = descriptor_pool.Default().FindMessageTypeByName(event_type)
    return message_factory.GetMessageClass(descriptor)
