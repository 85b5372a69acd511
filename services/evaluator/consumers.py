"""The evaluator's Kafka handler: each ``ModelTrained`` is evaluated (see :mod:`.core`).

Idempotent by model version. An event that names no registered version, an unknown use
case or a broken window raises, and the consumer dead-letters it with the reason.
"""

from __future__ import annotations

from google.protobuf.message import Message

from aifactory.trainer.v1 import events_pb2 as trainer_events
from libs.bus import Event
from libs.errors import InvalidArgument
from services.evaluator import convert
from services.evaluator.core import EvaluatorCore


class EvaluatorConsumer:
    def __init__(self, core: EvaluatorCore) -> None:
        self._core = core

    async def handle(self, event: Event[Message]) -> None:
        if not isinstance(event.payload, trainer_events.ModelTrained):
            raise InvalidArgument("event", f"unexpected {type(event.payload).__name__}")
        await self._core.evaluate_trained(convert.trained_of(event.payload))
