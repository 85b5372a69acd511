"""Wiring of the trainer service: settings and telemetry in, a ready server out.

``build`` opens the job store, the clients of the feature store and the registry and
the event publisher, starts the core (its scheduler and worker) and the consumer of
training requests and drift reports, and registers the gRPC servicer.
"""

from __future__ import annotations

from collections.abc import Mapping

from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.trainer.v1 import events_pb2 as trainer_events
from aifactory.trainer.v1 import trainer_service_pb2, trainer_service_pb2_grpc
from libs.auth import server_security
from libs.auth.tls import client_tls
from libs.bus import DeadLetters, EventConsumer, EventPublisher, KafkaSecurity
from libs.lifecycle.data import GrpcTrainingData, TrainingData
from libs.lifecycle.owners import GrpcMonitor, MonitorReports
from libs.lifecycle.registry import GrpcRegistry, ModelRegistry
from libs.rpc import RpcServer, channel
from libs.runtime import Service
from libs.telemetry import Telemetry
from libs.usecase import UseCase
from libs.usecase.follower import follow_catalogue, load_catalogue
from services.trainer.consumers import TrainerConsumer
from services.trainer.core import TrainerCore, TrainerOptions, code_version
from services.trainer.instruments import TrainerMetrics
from services.trainer.publisher import TrainerPublisher
from services.trainer.servicer import TrainerServicer
from services.trainer.settings import TrainerSettings
from services.trainer.store import JobStore

SERVICE_NAME = trainer_service_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


async def build(
    settings: TrainerSettings,
    telemetry: Telemetry,
    *,
    data: TrainingData | None = None,
    registry: ModelRegistry | None = None,
    usecases: Mapping[str, UseCase] | None = None,
    monitor: MonitorReports | None = None,
) -> Service:
    """``data``, ``registry`` and ``monitor`` replace the gRPC clients, ``usecases`` the
    catalogue (tests run the service on fakes)."""
    catalogue = await load_catalogue(settings, fixed=usecases)
    store = JobStore.from_url(settings.database_url)
    token = settings.bearer_token()
    tls = client_tls(settings)
    featurestore = channel(settings.featurestore_target, tls, token=token)
    registry_channel = channel(settings.registry_target, tls, token=token)
    kafka_security = KafkaSecurity.from_settings(settings)
    events = EventPublisher(settings.kafka_bootstrap, producer="trainer", security=kafka_security)
    await events.start()
    publisher = TrainerPublisher(
        events, trained_topic=settings.model_trained_topic, requested_topic=settings.training_requested_topic
    )
    core = TrainerCore(
        usecases=catalogue.usecases,
        store=store,
        data=data or GrpcTrainingData(featurestore),
        registry=registry or GrpcRegistry(registry_channel),
        publisher=publisher,
        metrics=TrainerMetrics(telemetry.meter),
        code_version=code_version(),
        options=TrainerOptions(
            threads=settings.torch_threads,
            dependency_attempts=settings.dependency_attempts,
            dependency_backoff_s=settings.dependency_backoff_s,
        ),
    )
    workers = await core.start()

    server = RpcServer(
        settings.grpc_address,
        telemetry,
        security=server_security(settings),
        drain_seconds=settings.drain_seconds,
    )
    server.add_service(
        trainer_service_pb2_grpc.add_TrainerServiceServicer_to_server,
        TrainerServicer(core, publisher),
        SERVICE_NAME,
    )
    service = Service(server)
    for worker in workers:
        service.watch(worker)  # stopped by core.stop; dying before that fails the service
    service.closers += [events.stop, featurestore.close, registry_channel.close]

    async def close_store() -> None:
        store.close()

    # Closed in reverse: the consumer stops first, then the core, then the store.
    service.closers += [close_store, core.stop]
    if settings.consume:
        if monitor is None and settings.monitor_target:
            # DriftDetected is confirmed with the monitor before it trains anything.
            monitor_channel = channel(settings.monitor_target, tls, token=token)
            service.closers.append(monitor_channel.close)
            monitor = GrpcMonitor(monitor_channel)
        consumer = EventConsumer(
            settings.kafka_bootstrap,
            settings.consumer_group,
            {
                settings.training_requested_topic: [
                    trainer_events.TrainingRequested,
                    trainer_events.TrainingSkipped,
                ],
                settings.drift_detected_topic: [monitor_events.DriftDetected],
            },
            TrainerConsumer(core, publisher, monitor=monitor, skew_s=settings.event_skew_s).handle,
            DeadLetters(events, settings.dead_letter_topic),
            security=kafka_security,
        )
        service.spawn("trainer-consumer", consumer.run(), stop=consumer.stop)
    await follow_catalogue(catalogue, service)
    return service
