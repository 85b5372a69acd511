"""The monitor's Kafka handlers: predictions, feedback and alias changes → :class:`Monitor`.

One handler serves the three topics (``aif.predictions``, ``aif.feedback``,
``aif.model.promoted``); it decodes each event with :mod:`services.monitor.convert` and
hands it to the monitor with its event id: the monitor journals the event and saves what
it produced before the handler returns (so before the consumer commits its offset), and
skips an event it applied before a crash that Kafka delivers again.

A bad event (an unknown use case, a missing id, an outcome that is not one of the
classes) raises ``UnknownUseCase`` or ``InvalidArgument``: the consumer dead-letters it
with that reason and carries on.
"""

from __future__ import annotations

from google.protobuf.message import Message

from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.registry.v1 import events_pb2 as registry_events
from libs.bus import Event
from libs.errors import InvalidArgument
from services.monitor import convert
from services.monitor.core import Monitor


class MonitorHandler:
    """``handle`` is the :class:`~libs.bus.EventConsumer` handler of the monitor's topics."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    async def handle(self, event: Event[Message]) -> None:
        payload = event.payload
        if isinstance(payload, gateway_events.PredictionLogged):
            await self.prediction(payload, event.meta.use_case, event.meta.event_id)
        elif isinstance(payload, gateway_events.FeedbackRecorded):
            await self.feedback(payload, event.meta.use_case, event.meta.event_id)
        elif isinstance(payload, registry_events.AliasChanged):
            await self.alias_changed(payload, event.meta.event_id)
        else:
            raise InvalidArgument("event", f"unexpected {type(payload).__name__}")

    async def prediction(
        self, event: gateway_events.PredictionLogged, use_case: str, event_id: str = ""
    ) -> None:
        uc = self._monitor.usecase(event.use_case or use_case)
        prediction = convert.prediction_of(event, uc, self._monitor.clock())
        await self._monitor.on_prediction(prediction, shadow=event.shadow, event_id=event_id)

    async def feedback(
        self, event: gateway_events.FeedbackRecorded, use_case: str, event_id: str = ""
    ) -> None:
        if not event.prediction_id:
            # An outcome reported for a record, not for a prediction (history, labels
            # for training): the feature store's business, nothing to join here.
            return
        if not event.use_case:
            event.use_case = use_case
        uc = self._monitor.usecase(event.use_case)
        await self._monitor.on_outcome(
            convert.outcome_of(event, uc, self._monitor.clock()), event_id=event_id
        )

    async def alias_changed(self, event: registry_events.AliasChanged, event_id: str) -> None:
        move = convert.alias_move_of(event, event_id, self._monitor.clock())
        await self._monitor.on_alias(move, event_id=event_id)
