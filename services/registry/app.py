"""Wiring of the registry service: settings and telemetry in, a ready server out.

``build`` migrates the database (``alembic upgrade head``), opens the artifact store
and the Triton exporter, starts the outbox relay that publishes ``AliasChanged``
events, the consumer of evaluation verdicts and rollback requests, and the
prediction indexer, and registers the gRPC servicer.
"""

from __future__ import annotations

import asyncio

from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from libs.auth import server_security
from libs.bus import DeadLetters, EventConsumer, EventPublisher, KafkaSecurity
from libs.bus.outbox import OutboxRelay
from libs.rpc import RpcServer, ServerSecurity
from libs.runtime import Service
from libs.telemetry import Telemetry
from libs.usecase import load_for_service
from services.registry.artifacts import ArtifactStore
from services.registry.consumers import PredictionIndexer, RegistryEvents
from services.registry.core import Registry, utcnow
from services.registry.export import TritonExporter
from services.registry.runs import RunTracker
from services.registry.servicer import RegistryServicer
from services.registry.settings import RegistrySettings
from services.registry.store import open_store

SERVICE_NAME = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


async def build(
    settings: RegistrySettings, telemetry: Telemetry, *, security: ServerSecurity | None = None
) -> Service:
    """``security`` overrides the one the settings describe (tests)."""
    usecases = load_for_service(settings.usecases_dir)
    store = await asyncio.to_thread(
        open_store, settings.database_url, promoted_topic=settings.promoted_topic, clock=utcnow
    )
    artifacts = ArtifactStore(settings.artifact_root)
    exporter = TritonExporter(
        settings.triton_model_repository,
        artifacts,
        instance_kind=settings.triton_instance_kind,
        max_batch_size=settings.triton_max_batch_size,
        max_queue_delay_us=settings.triton_max_queue_delay_us,
        cpu_threads=settings.triton_cpu_threads,
    )
    kafka_security = KafkaSecurity.from_settings(settings)
    publisher = EventPublisher(settings.kafka_bootstrap, producer="registry", security=kafka_security)
    await publisher.start()

    alias_events = telemetry.meter.create_counter(
        "registry.alias_changed.published", description="AliasChanged events published"
    )
    relay = OutboxRelay(
        store, publisher, name="registry-outbox", on_published=lambda events: alias_events.add(len(events))
    )
    registry = Registry(
        store,
        artifacts,
        usecases,
        exporter,
        validate_artifacts=settings.validate_artifacts,
        export_on_register=settings.export_on_register,
        clock=utcnow,
        on_alias_change=relay.kick,
    )
    runs = RunTracker(store, usecases, utcnow)

    server = RpcServer(
        settings.grpc_address,
        telemetry,
        security=security or server_security(settings),
        drain_seconds=settings.drain_seconds,
    )
    server.add_service(
        registry_service_pb2_grpc.add_RegistryServiceServicer_to_server,
        RegistryServicer(
            registry,
            runs,
            artifacts,
            max_artifact_bytes=settings.max_artifact_bytes,
            export_roots=[settings.export_root, settings.triton_model_repository],
        ),
        SERVICE_NAME,
    )
    service = Service(server)

    async def close_store() -> None:
        store.close()

    # Closed in reverse: consumers first, then the relay (last flush), publisher, store.
    service.closers += [close_store, publisher.stop]
    service.spawn("registry-outbox", relay.run(), stop=relay.stop)
    if settings.consume:
        dead_letters = DeadLetters(publisher, settings.dead_letter_topic)
        consumer = EventConsumer(
            settings.kafka_bootstrap,
            settings.consumer_group,
            {
                settings.evaluated_topic: [evaluator_events.ModelEvaluated],
                settings.rollback_topic: [monitor_events.RollbackRequested],
            },
            RegistryEvents(registry).handle,
            dead_letters,
            security=kafka_security,
        )
        service.spawn("registry-events", consumer.run(), stop=consumer.stop)
        indexer = PredictionIndexer(
            settings.kafka_bootstrap,
            f"{settings.consumer_group}.predictions",
            settings.predictions_topic,
            registry,
            dead_letters,
            security=kafka_security,
            max_batch=settings.prediction_batch,
        )
        service.spawn("registry-predictions", indexer.run(), stop=indexer.stop)
    return service
