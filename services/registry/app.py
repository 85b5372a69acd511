"""Wiring of the registry service: settings and telemetry in, a ready server out.

``build`` migrates the database (``alembic upgrade head``), opens the artifact store
(files or the database, by ``artifact_store``) and the exporter of serving bundles, starts the outbox relay that publishes ``AliasChanged``
events, the consumer of evaluation verdicts and rollback requests, and the
prediction indexer, and registers the gRPC servicer.

The registry owns the use-case catalogue (:mod:`services.registry.catalogue`): it loads it
from its database, makes sure the compacted catalogue topic exists (and publishes the
catalogue again when that topic was lost), and publishes each change through the outbox.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping

from google.protobuf.message import Message

from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from libs.auth import server_security
from libs.auth.tls import client_tls
from libs.bus import DeadLetters, EventConsumer, EventPublisher, KafkaSecurity
from libs.bus.admin import CREATED, ensure_catalogue_topic
from libs.bus.outbox import OutboxRelay
from libs.lifecycle.owners import EvaluationReports, GrpcEvaluations, GrpcMonitor, MonitorReports
from libs.rpc import RpcServer, ServerSecurity, channel
from libs.runtime import Service
from libs.telemetry import Telemetry
from libs.usecase import UseCase
from libs.usecase.catalogue import Catalogue
from libs.usecase.follower import follow_catalogue
from services.registry.artifacts import ArtifactStore, FileArtifactStore
from services.registry.catalogue import UseCaseCatalogue
from services.registry.checkpoints import (
    CheckpointLog,
    CheckpointPublisher,
    ensure_signing_key,
    verify_signed,
)
from services.registry.consumers import PredictionIndexer, RegistryEvents
from services.registry.convert import usecase_changed_event
from services.registry.core import Registry, utcnow
from services.registry.domain import ChainReport, UseCaseChange
from services.registry.export import TritonExporter
from services.registry.runs import RunTracker
from services.registry.servicer import RegistryServicer
from services.registry.settings import RegistrySettings
from services.registry.store import SqlStore, open_store
from services.registry.store.blobs import SqlArtifactStore
from services.registry.store.roles import migrate_as_owner

log = logging.getLogger(__name__)
SERVICE_NAME = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


def open_artifacts(settings: RegistrySettings, store: SqlStore) -> ArtifactStore:
    """The artifact store the settings choose (``artifact_store``)."""
    if settings.artifact_store == "database":
        return SqlArtifactStore(store.db, chunk_bytes=settings.artifact_chunk_bytes)
    return FileArtifactStore(settings.artifact_root)


async def build(
    settings: RegistrySettings,
    telemetry: Telemetry,
    *,
    security: ServerSecurity | None = None,
    usecases: Mapping[str, UseCase] | None = None,
    evaluations: EvaluationReports | None = None,
    monitor: MonitorReports | None = None,
) -> Service:
    """``security`` overrides the one the settings describe; ``usecases`` are known besides
    the catalogue's, without being in it (tests); ``evaluations`` and ``monitor`` replace
    the gRPC clients of the evaluator and the monitor that confirm events."""
    if settings.database_owner_url:
        await asyncio.to_thread(migrate_as_owner, settings.database_owner_url, settings.database_url)
    store = await asyncio.to_thread(
        open_store,
        settings.database_url,
        migrate=not settings.database_owner_url,
        promoted_topic=settings.promoted_topic,
        usecases_topic=settings.usecases_topic,
        clock=utcnow,
    )
    artifacts = open_artifacts(settings, store)
    exporter = TritonExporter(
        settings.export_root,
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
        "aif.registry.alias_changed.published", description="AliasChanged events published"
    )
    relay = OutboxRelay(
        store, publisher, name="registry-outbox", on_published=lambda events: alias_events.add(len(events))
    )
    # The catalogue this registry owns; its live set is what the registry checks against.
    known = Catalogue(usecases, source="the registry's catalogue")
    catalogue = UseCaseCatalogue(
        store, known, clock=utcnow, on_change=relay.kick, loop=asyncio.get_running_loop()
    )
    await asyncio.to_thread(catalogue.load)
    topic = await ensure_catalogue_topic(
        settings.kafka_bootstrap, settings.usecases_topic, security=kafka_security
    )
    if topic == CREATED:
        # A new topic with a catalogue in the database (the broker's data was lost): publish
        # every entry again, so the services following it learn them.
        await republish(catalogue, publisher, settings.usecases_topic)
    registry = Registry(
        store,
        artifacts,
        known.usecases,
        exporter,
        validate_artifacts=settings.validate_artifacts,
        sandbox_limits=settings.sandbox_limits(),
        clock=utcnow,
        on_alias_change=relay.kick,
    )
    runs = RunTracker(store, known.usecases, utcnow)

    checkpoints: CheckpointPublisher | None = None
    verify_signed_chain: Callable[[], Awaitable[ChainReport]] | None = None
    if settings.audit_checkpoint_seconds > 0:
        signing_key = ensure_signing_key(settings.audit_checkpoint_key)
        checkpoint_log = CheckpointLog(
            settings.kafka_bootstrap, settings.audit_checkpoint_topic, kafka_security
        )
        checkpoints = CheckpointPublisher(
            store, signing_key, checkpoint_log, interval=settings.audit_checkpoint_seconds
        )
        # VerifyAuditChain also checks the chain against what the registry signed.
        verify_signed_chain = functools.partial(
            verify_signed, store, checkpoint_log, signing_key.public_key()
        )

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
            export_roots=[settings.export_root],
            catalogue=catalogue,
            verify_signed=verify_signed_chain,
        ),
        SERVICE_NAME,
    )
    service = Service(server)

    async def close_store() -> None:
        store.close()

    # Closed in reverse: consumers first, then the relay (last flush), publisher, store.
    service.closers += [close_store, publisher.stop]
    service.spawn("registry-outbox", relay.run(), stop=relay.stop)
    if checkpoints is not None:
        await checkpoints.start()
        service.spawn("registry-audit-checkpoints", checkpoints.run(), stop=checkpoints.stop)
    if settings.consume:
        dead_letters = DeadLetters(publisher, settings.dead_letter_topic)
        # Each lifecycle event is confirmed with its owner before it is acted on; a topic
        # whose owner is not configured is not followed at all.
        token, tls = settings.bearer_token(), client_tls(settings)
        if evaluations is None and settings.evaluator_target:
            evaluator_channel = channel(settings.evaluator_target, tls, token=token)
            service.closers.append(evaluator_channel.close)
            evaluations = GrpcEvaluations(evaluator_channel)
        if monitor is None and settings.monitor_target:
            monitor_channel = channel(settings.monitor_target, tls, token=token)
            service.closers.append(monitor_channel.close)
            monitor = GrpcMonitor(monitor_channel)
        followed: dict[str, list[type[Message]]] = {}
        if evaluations is not None:
            followed[settings.evaluated_topic] = [evaluator_events.ModelEvaluated]
        if monitor is not None:
            followed[settings.rollback_topic] = [monitor_events.RollbackRequested]
        if followed:
            events = RegistryEvents(
                registry, evaluations=evaluations, monitor=monitor, skew_s=settings.event_skew_s
            )
            consumer = EventConsumer(
                settings.kafka_bootstrap,
                settings.consumer_group,
                followed,
                events.handle,
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
    await follow_catalogue(known, service)
    return service


async def republish(catalogue: UseCaseCatalogue, publisher: EventPublisher, topic: str) -> int:
    """Publish every catalogue entry on ``topic`` (found empty); returns how many."""
    records = await asyncio.to_thread(catalogue.records)
    changes = [UseCaseChange(r, "republished: the catalogue topic was created anew", "") for r in records]
    if changes:
        await publisher.publish_many([usecase_changed_event(c, topic) for c in changes])
        log.warning("catalogue topic %s was missing: published its %d entries again", topic, len(changes))
    return len(changes)
