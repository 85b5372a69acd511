"""Wiring of the ingestion service: settings and telemetry in, a ready server out.

Besides the gRPC API, ``build`` starts two background tasks: the raw-topic pipeline
(one consumer group over the raw topic of every use case of the catalogue, joined by
each use case applied while it runs) and the quality reporter.
Before either counts anything, both transactional producers have settled what a
predecessor of this instance left open and the open quality windows are read back.
A fatal pipeline error (its transactional id fenced by another instance, a broken
transaction) stops the process with SIGTERM, so its supervisor restarts it clean.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from aifactory.ingestion.v1 import ingestion_service_pb2, ingestion_service_pb2_grpc
from libs.auth import server_security
from libs.bus import KafkaSecurity
from libs.bus.admin import ensure_topic
from libs.rpc import RpcServer
from libs.runtime import Service
from libs.telemetry import Telemetry
from libs.usecase import UseCase
from libs.usecase.catalogue import Change, ChangeKind
from libs.usecase.follower import follow_catalogue, load_catalogue
from services.ingestion.consumers import RawPipeline
from services.ingestion.core import Core, make_core
from services.ingestion.publisher import TransactionalPublisher
from services.ingestion.push import PushIngest
from services.ingestion.quality import QualityReporter, WindowState, load_windows
from services.ingestion.servicer import IngestionServicer
from services.ingestion.settings import IngestionSettings

SERVICE_NAME = ingestion_service_pb2.DESCRIPTOR.services_by_name["IngestionService"].full_name
log = logging.getLogger(__name__)


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication: int,
    kafka_options: Mapping[str, Any] | None = None,
) -> None:
    """Create the topics ingestion reads and writes when missing, so the group can join at once."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(kafka_options or {}))
    await admin.start()
    try:
        missing = set(names) - set(await admin.list_topics())
        if missing:
            await admin.create_topics(
                [
                    NewTopic(n, num_partitions=partitions, replication_factor=replication)
                    for n in sorted(missing)
                ]
            )
    except Exception as exc:  # noqa: BLE001 - auto-creation on first produce is the fallback
        log.warning("could not create topics %s: %s", sorted(names), exc)
    finally:
        await admin.close()


def kafka_options(settings: IngestionSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for the service's Kafka identity (SASL in the secure profile)."""
    return KafkaSecurity.from_settings(settings).client_kwargs()


def quality_state(settings: IngestionSettings) -> WindowState:
    return WindowState(settings.quality_state_topic, settings.transactional_id)


def make_pipeline(settings: IngestionSettings, core: Core) -> RawPipeline:
    """The raw-topic pipeline over every loaded use case (not started)."""
    options = kafka_options(settings)
    return RawPipeline(
        settings.kafka_bootstrap,
        {settings.raw_topic(n): ing for n, ing in core.ingestors.items()},
        core.dataset,
        core.quality,
        TransactionalPublisher(
            settings.kafka_bootstrap,
            settings.transactional_id,
            kafka_options=options,
            records_per_message=settings.records_per_message,
        ),
        group_id=settings.consumer_group,
        records_topic=settings.records_topic,
        dead_letter_topic=settings.dead_letter_topic,
        instance_id=settings.instance,
        quality_state=quality_state(settings),
        max_batch=settings.max_batch,
        kafka_options=options,
        max_batch_bytes=settings.kafka_max_batch_bytes,
        max_record_bytes=settings.kafka_max_record_bytes,
        stall_timeout_s=settings.stall_timeout_s,
    )


async def build(
    settings: IngestionSettings, telemetry: Telemetry, *, usecases: Mapping[str, UseCase] | None = None
) -> Service:
    """``usecases`` replaces the catalogue (tests)."""
    catalogue = await load_catalogue(settings, fixed=usecases)
    core = make_core(settings, telemetry.meter, catalogue.usecases)
    ingestors, dataset, quality = core.ingestors, core.dataset, core.quality
    service = Service(
        RpcServer(
            settings.grpc_address,
            telemetry,
            security=server_security(settings),
            drain_seconds=settings.drain_seconds,
        )
    )

    state = quality_state(settings)
    # The state topic first: every counting transaction writes to it. Compacted: only the
    # latest window of each key matters (set again on a topic auto-created without it).
    await ensure_topic(
        settings.kafka_bootstrap,
        state.topic,
        configs={"cleanup.policy": "compact"},
        security=KafkaSecurity.from_settings(settings),
        replication=settings.topic_replication,
    )
    push_publisher = TransactionalPublisher(
        settings.kafka_bootstrap,
        f"{settings.transactional_id}-grpc",
        kafka_options=kafka_options(settings),
        records_per_message=settings.records_per_message,
    )
    await push_publisher.start()
    service.closers.append(push_publisher.stop)
    push = PushIngest(
        ingestors,
        dataset,
        quality,
        push_publisher,
        records_topic=settings.records_topic,
        dead_letter_topic=settings.dead_letter_topic,
        max_items=settings.max_request_items,
        quality_state=state,
    )
    service.server.add_service(
        ingestion_service_pb2_grpc.add_IngestionServiceServicer_to_server,
        IngestionServicer(push, dataset),
        SERVICE_NAME,
    )

    # Built with no use case too: it subscribes to each raw topic as its use case is applied.
    pipeline = make_pipeline(settings, core) if settings.consume else None
    if pipeline is not None:
        await pipeline.publisher.start()  # fences this instance's predecessor (run() reuses it)
    quality.resume(await load_windows(settings.kafka_bootstrap, state, kafka_options(settings)))

    reporter = QualityReporter(
        quality, push_publisher.commit, settings.quality_topic, state=state, lock=dataset.lock
    )
    service.spawn("ingestion-quality", reporter.run(), stop=reporter.stop)

    if pipeline is not None:
        await ensure_topics(
            settings.kafka_bootstrap,
            [
                *map(settings.raw_topic, ingestors),
                settings.records_topic,
                settings.dead_letter_topic,
                settings.quality_topic,
            ],
            settings.topic_partitions,
            settings.topic_replication,
            kafka_options(settings),
        )
        # A fatal pipeline error (fenced, broker lost) fails the service: NOT_SERVING and exit.
        service.spawn("ingestion-pipeline", pipeline.run(), stop=pipeline.stop)

    async def take_up(change: Change) -> None:
        """A use case applied (or retired) while running: its raw topic is consumed (or not)."""
        topic = settings.raw_topic(change.name)
        if change.kind is ChangeKind.RETIRED:
            core.drop(change.name)
            if pipeline is not None:
                await pipeline.drop(topic)
            return
        ingestor = await core.take_up(change.spec)
        if pipeline is not None:
            await ensure_topics(
                settings.kafka_bootstrap,
                [topic],
                settings.topic_partitions,
                settings.topic_replication,
                kafka_options(settings),
            )
            await pipeline.add(topic, ingestor)

    catalogue.listen(take_up)
    await follow_catalogue(catalogue, service)
    return service
