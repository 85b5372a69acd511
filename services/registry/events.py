"""What the registry does with the events it consumes.

- ``aifactory.evaluator.v1.ModelEvaluated`` (topic model.evaluated): record the verdict
  and act by the use case's policy (auto-promote, wait for approval, or fail).
- ``aifactory.monitor.v1.RollbackRequested`` (topic rollback.requested): move the alias
  back to ``previous``, but only while it still points at the version the alarm was about.

Both are idempotent by event id (stored with the effect, in its transaction). A database
outage raises ``Unavailable`` so the consumer retries; an event naming an unknown use
case or version, or a rollback that cannot happen, is dead-lettered with the reason.
"""
from __future__ import annotations

import logging

from google.protobuf.message import Message

from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from libs.bus import Event
from services.registry.blocking import offload
from services.registry.convert import evaluation_of
from services.registry.core import Registry
from services.registry.domain import CHAMPION, ModelKey

log = logging.getLogger(__name__)


class RegistryEvents:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def handle(self, event: Event[Message]) -> None:
        payload = event.payload
        if isinstance(payload, evaluator_events.ModelEvaluated):
            outcome = await offload(self._registry.apply_evaluation, evaluation_of(payload),
                                    event_id=event.meta.event_id, source=event.topic)
            log.info("evaluation %s of %s: recorded=%s promoted=%s status=%s", payload.report_id,
                     outcome.version.key, outcome.recorded, outcome.promoted, outcome.version.status.value)
        elif isinstance(payload, monitor_events.RollbackRequested):
            use_case = payload.use_case or payload.model.use_case
            result = await offload(
                self._registry.rollback, ModelKey(use_case, payload.model.model_name), None,
                alias=payload.alias or CHAMPION, reason=payload.reason or "monitor alarm",
                evidence=[payload.request_id, *payload.evidence_ids], only_if_current=payload.model.version,
                event_id=event.meta.event_id, source=event.topic)
            if result is not None:
                log.info("rolled back %s/%s %s from v%d to v%d", use_case, payload.model.model_name,
                         payload.alias or CHAMPION, result.previous_version,
                         result.alias.version if result.alias else 0)
