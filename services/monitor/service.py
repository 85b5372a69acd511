"""The monitor's service layer: decoded events → core → store → outbox → Kafka.

``handle`` is the consumer's handler for the predictions, feedback and model-promoted
topics. Each event's effects are committed in one transaction with the events they
publish (an outbox); a relay then publishes ``DriftDetected`` (event id = report id,
key = use case) and ``RollbackRequested`` (event id = request id) and marks them sent.
A publish that fails stays in the outbox and is retried; a restart publishes what is
left, so an alarm is neither lost nor doubled. A database outage keeps the effects in
memory and retries them with the next commit.

A bad event (unknown use case, missing id, an outcome that is not one of the classes)
raises ``InvalidArgument``: the consumer dead-letters it with that reason.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from google.protobuf.message import Message
from sqlalchemy.exc import SQLAlchemyError

from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.registry.v1 import events_pb2 as registry_events
from libs.bus import Event, EventPublisher, Outgoing
from libs.errors import InvalidArgument, Unavailable
from services.monitor import convert
from services.monitor.core import MonitorCore, utcnow
from services.monitor.domain import Effects, VersionKey
from services.monitor.instruments import MonitorMetrics
from services.monitor.references import ReferenceSource
from services.monitor.store import DRIFT, MonitorStore

log = logging.getLogger(__name__)


class MonitorService:
    def __init__(self, core: MonitorCore, store: MonitorStore, references: ReferenceSource,
                 publisher: EventPublisher, *, drift_topic: str, rollback_topic: str,
                 metrics: MonitorMetrics | None = None, clock: Callable[[], datetime] = utcnow,
                 reference_retry_s: float = 30.0, relay_interval_s: float = 2.0) -> None:
        self.core = core
        self._store = store
        self._references = references
        self._publisher = publisher
        self._topics = {DRIFT: drift_topic, "rollback": rollback_topic}
        self._metrics = metrics
        self._clock = clock
        self._retry_s = reference_retry_s
        self._interval = relay_interval_s
        self._resolved: set[VersionKey] = set()
        self._retry_at: dict[VersionKey, float] = {}
        self._unsaved = Effects()
        # One commit at a time, so a retried batch never lands after a newer one.
        self._saving = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._relay(), name="monitor-outbox")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _relay(self) -> None:
        while True:
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - stays in the outbox; retried
                log.warning("publishing the outbox failed (%s); retrying", exc)
            if self._stopping:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    async def flush(self) -> int:
        """Publish what waits in the outbox; returns how many were published."""
        await self._save()
        sent = 0
        while True:
            pending = await asyncio.to_thread(self._store.pending)
            if not pending:
                return sent
            items = []
            for p in pending:
                cls = monitor_events.DriftDetected if p.kind == DRIFT else monitor_events.RollbackRequested
                items.append(Outgoing(self._topics[p.kind], cls.FromString(p.payload), p.use_case,
                                      key=p.use_case, event_id=p.event_id))
            await self._publisher.publish_many(items)
            await asyncio.to_thread(self._store.mark_sent, [p.event_id for p in pending], self._clock())
            for p in pending:
                log.info("published %s %s", "DriftDetected" if p.kind == DRIFT else "RollbackRequested", p.event_id)
            sent += len(pending)
            self.published += len(pending)

    # ------------------------------------------------------------------ events
    async def handle(self, event: Event[Message]) -> None:
        payload = event.payload
        now = self._clock()
        if isinstance(payload, gateway_events.PredictionLogged):
            uc = self.core.usecase(payload.use_case or event.meta.use_case)
            prediction = convert.prediction_of(payload, uc, now)
            if not payload.shadow:
                await self._ensure_reference(prediction.model)
            effects = self.core.on_prediction(prediction, shadow=payload.shadow)
        elif isinstance(payload, gateway_events.FeedbackRecorded):
            if not payload.prediction_id:
                # An outcome reported for a record, not for a prediction (history, labels
                # for training): the feature store's business, nothing to join here.
                return
            if not payload.use_case:
                payload.use_case = event.meta.use_case
            uc = self.core.usecase(payload.use_case)
            effects = self.core.on_outcome(convert.outcome_of(payload, uc, now))
        elif isinstance(payload, registry_events.AliasChanged):
            effects = self.core.on_alias(convert.alias_move_of(payload, event.meta.event_id, now))
        else:
            raise InvalidArgument("event", f"unexpected {type(payload).__name__}")
        await self.apply(effects)

    async def apply(self, effects: Effects) -> None:
        if not effects:
            return
        if self._metrics is not None:
            self._metrics.record(effects)
        self._unsaved.merge(effects)
        if await self._save() and (effects.alarms or effects.rollbacks):
            self._wake.set()

    async def _save(self) -> bool:
        async with self._saving:
            if not self._unsaved:
                return True
            batch, self._unsaved = self._unsaved, Effects()
            try:
                await asyncio.to_thread(self._store.commit, batch, self._clock())
            except SQLAlchemyError as exc:
                # Keep them (in order) for the next commit; the consumer carries on.
                self._unsaved = batch.merge(self._unsaved)
                log.error("monitor store unavailable (%s); %d reports waiting", exc, len(self._unsaved.reports))
                return False
            return True

    async def _ensure_reference(self, key: VersionKey) -> None:
        if key in self._resolved or self._retry_at.get(key, 0.0) > time.monotonic():
            return
        try:
            reference = await self._references.reference(key)
        except Unavailable as exc:
            self._retry_at[key] = time.monotonic() + self._retry_s
            log.warning("no reference for %s yet (%s); distribution checks wait, retry in %.0fs", key, exc,
                        self._retry_s)
            return
        self._resolved.add(key)
        self.core.set_reference(key, reference)
        log.info("%s: %s", key, "reference loaded" if reference is not None else "no reference")
