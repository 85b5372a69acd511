"""Wiring of the evaluator service: settings and telemetry in, a ready server out.

``build`` opens the report store, the clients of the feature store and the registry
and the event publisher, registers the gRPC servicer and starts the consumer of
``ModelTrained`` events.
"""

from __future__ import annotations

from collections.abc import Mapping

from aifactory.evaluator.v1 import evaluator_service_pb2, evaluator_service_pb2_grpc
from aifactory.trainer.v1 import events_pb2 as trainer_events
from libs.auth import server_security
from libs.auth.tls import client_tls
from libs.bus import DeadLetters, EventConsumer, EventPublisher, KafkaSecurity
from libs.lifecycle.data import GrpcTrainingData, TrainingData
from libs.lifecycle.registry import EvaluationRegistry, GrpcRegistry
from libs.rpc import RpcServer, channel
from libs.runtime import Service
from libs.telemetry import Telemetry
from libs.usecase import UseCase
from libs.usecase.follower import follow_catalogue, load_catalogue
from services.evaluator.consumers import EvaluatorConsumer
from services.evaluator.core import EvaluatorCore, EvaluatorOptions
from services.evaluator.publisher import EvaluatorPublisher
from services.evaluator.servicer import EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings
from services.evaluator.store import ReportStore

SERVICE_NAME = evaluator_service_pb2.DESCRIPTOR.services_by_name["EvaluatorService"].full_name


async def build(
    settings: EvaluatorSettings,
    telemetry: Telemetry,
    *,
    data: TrainingData | None = None,
    registry: EvaluationRegistry | None = None,
    usecases: Mapping[str, UseCase] | None = None,
) -> Service:
    """``data`` and ``registry`` replace the gRPC clients, ``usecases`` the catalogue (tests
    run the service on fakes)."""
    catalogue = await load_catalogue(settings, fixed=usecases)
    store = ReportStore.from_url(settings.database_url)
    token = settings.bearer_token()
    tls = client_tls(settings)
    featurestore = channel(settings.featurestore_target, tls, token=token)
    registry_channel = channel(settings.registry_target, tls, token=token)
    registry = registry or GrpcRegistry(registry_channel)
    kafka_security = KafkaSecurity.from_settings(settings)
    events = EventPublisher(settings.kafka_bootstrap, producer="evaluator", security=kafka_security)
    await events.start()
    core = EvaluatorCore(
        usecases=catalogue.usecases,
        data=data or GrpcTrainingData(featurestore),
        registry=registry,
        store=store,
        publisher=EvaluatorPublisher(events, registry, evaluated_topic=settings.model_evaluated_topic),
        options=EvaluatorOptions(
            min_holdout_rows=settings.min_holdout_rows,
            fairness_allowance_cap=settings.fairness_allowance_cap,
            sandbox=settings.sandbox_limits(),
        ),
    )
    server = RpcServer(
        settings.grpc_address,
        telemetry,
        security=server_security(settings),
        drain_seconds=settings.drain_seconds,
    )
    server.add_service(
        evaluator_service_pb2_grpc.add_EvaluatorServiceServicer_to_server,
        EvaluatorServicer(core),
        SERVICE_NAME,
    )
    service = Service(server)

    async def close_store() -> None:
        store.close()

    # Closed in reverse: the consumer stops first, then the store, the clients, the publisher.
    service.closers += [events.stop, featurestore.close, registry_channel.close, close_store]
    if settings.consume:
        consumer = EventConsumer(
            settings.kafka_bootstrap,
            settings.consumer_group,
            {settings.model_trained_topic: [trainer_events.ModelTrained]},
            EvaluatorConsumer(core).handle,
            DeadLetters(events, settings.dead_letter_topic),
            security=kafka_security,
        )
        service.spawn("evaluator-consumer", consumer.run(), stop=consumer.stop)
    await follow_catalogue(catalogue, service)
    return service
