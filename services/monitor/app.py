"""Wiring of the monitor service: settings and telemetry in, a ready server out.

``build`` opens (and migrates) the store and resumes the saved alarm state from it (the
last checkpoint and the journal after it: pending joins, windows, detectors), the
registry client for training references, the publisher with the outbox relay, and the
consumer of predictions, feedback and alias changes; it registers the gRPC servicer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.monitor.v1 import monitor_service_pb2, monitor_service_pb2_grpc
from aifactory.registry.v1 import events_pb2 as registry_events
from libs.auth import server_security
from libs.auth.tls import client_tls
from libs.bus import DeadLetters, EventConsumer, EventPublisher, KafkaSecurity, Outgoing
from libs.bus.outbox import OutboxRelay
from libs.rpc import RpcServer, ServerSecurity, channel
from libs.runtime import Service
from libs.telemetry import Telemetry
from libs.usecase import UseCase
from libs.usecase.catalogue import Change, ChangeKind
from libs.usecase.follower import follow_catalogue, load_catalogue
from services.monitor.consumers import MonitorHandler
from services.monitor.core import Monitor, MonitorCore
from services.monitor.instruments import MonitorMetrics
from services.monitor.references import ReferenceSource, RegistryReferences, StaticReferences
from services.monitor.servicer import MonitorServicer
from services.monitor.settings import MonitorSettings
from services.monitor.store import MonitorStore

SERVICE_NAME = monitor_service_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name

log = logging.getLogger(__name__)


def _published(events: Sequence[Outgoing]) -> None:
    for out in events:
        log.info("published %s %s", type(out.event).__name__, out.event_id)


async def build(
    settings: MonitorSettings,
    telemetry: Telemetry,
    *,
    references: ReferenceSource | None = None,
    security: ServerSecurity | None = None,
    usecases: Mapping[str, UseCase] | None = None,
) -> Service:
    """``references``, ``security`` and ``usecases`` (instead of the catalogue) override what
    the settings describe (tests)."""
    catalogue = await load_catalogue(settings, fixed=usecases)
    store = await asyncio.to_thread(
        MonitorStore.from_url,
        settings.database_url,
        drift_topic=settings.drift_detected_topic,
        rollback_topic=settings.rollback_topic,
    )
    saved = await asyncio.to_thread(store.states)
    core = MonitorCore(catalogue.usecases, capacity=settings.join_capacity, saved=saved)

    async def take_up(change: Change) -> None:
        if change.kind is ChangeKind.RETIRED:
            core.drop(change.name)
        else:
            core.take_up(change.spec)

    catalogue.listen(take_up)
    server = RpcServer(
        settings.grpc_address,
        telemetry,
        security=security or server_security(settings),
        drain_seconds=settings.drain_seconds,
    )
    server.add_service(
        monitor_service_pb2_grpc.add_MonitorServiceServicer_to_server, MonitorServicer(store), SERVICE_NAME
    )
    service = Service(server)

    async def close_store() -> None:
        store.close()

    service.closers.append(close_store)
    if references is None:
        if settings.registry_target:
            registry = channel(settings.registry_target, client_tls(settings), token=settings.bearer_token())
            references = RegistryReferences(registry)
            service.closers.append(registry.close)
        else:
            references = StaticReferences()
    kafka_security = KafkaSecurity.from_settings(settings)
    publisher = EventPublisher(settings.kafka_bootstrap, producer="monitor", security=kafka_security)
    await publisher.start()
    service.closers.append(publisher.stop)
    monitor = Monitor(
        core,
        store,
        references,
        metrics=MonitorMetrics(telemetry.meter, lambda: core.joiners),
        reference_retry_s=settings.reference_retry_s,
        checkpoint_every=settings.checkpoint_every,
    )
    checkpoint, journal = await asyncio.to_thread(store.recovery)
    await monitor.resume(checkpoint, journal)

    async def final_checkpoint() -> None:
        await monitor.checkpoint()

    # Runs after the consumer and the relay have stopped, before the store closes.
    service.closers.insert(service.closers.index(close_store) + 1, final_checkpoint)
    relay = OutboxRelay(
        store,
        publisher,
        name="monitor-outbox",
        poll_s=settings.relay_interval_s,
        before_flush=monitor.save,
        on_published=_published,
    )
    monitor.on_outbox = relay.kick
    # Publishes what a previous run left in the outbox first.
    service.spawn("monitor-outbox", relay.run(), stop=relay.stop)
    if settings.consume:
        consumer = EventConsumer(
            settings.kafka_bootstrap,
            settings.consumer_group,
            {
                settings.predictions_topic: [gateway_events.PredictionLogged],
                settings.feedback_topic: [gateway_events.FeedbackRecorded],
                settings.model_promoted_topic: [registry_events.AliasChanged],
            },
            MonitorHandler(monitor).handle,
            DeadLetters(publisher, settings.dead_letter_topic),
            security=kafka_security,
        )
        service.spawn("monitor-consumer", consumer.run(), stop=consumer.stop)
    await follow_catalogue(catalogue, service)
    return service
