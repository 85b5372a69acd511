"""Wiring of the ingestion service: settings and telemetry in, a ready server out.

Besides the gRPC API, ``build`` starts two background tasks: the raw-topic pipeline
(one consumer group over every loaded use case's raw topic) and the quality reporter.
A fatal pipeline error (its transactional id fenced by another instance, a broken
transaction) stops the process with SIGTERM, so its supervisor restarts it clean.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry.metrics import Meter

from aifactory.ingestion.v1 import ingestion_service_pb2, ingestion_service_pb2_grpc
from libs.auth import server_security
from libs.bus import EventPublisher, KafkaSecurity
from libs.errors import ConfigError
from libs.rpc import RpcServer
from libs.runtime import Service
from libs.telemetry import Telemetry
from libs.usecase import DEFAULT_DIR, UseCaseError, UseCases, load_usecases, spec_files
from services.ingestion.consumers import RawPipeline
from services.ingestion.pii import DEV_SALT
from services.ingestion.publisher import TransactionalPublisher
from services.ingestion.push import PushIngest
from services.ingestion.quality import QualityReporter, QualityTracker
from services.ingestion.records import UseCaseIngestor
from services.ingestion.servicer import IngestionServicer
from services.ingestion.settings import IngestionSettings
from services.ingestion.store import RawDataset

SERVICE_NAME = ingestion_service_pb2.DESCRIPTOR.services_by_name["IngestionService"].full_name
log = logging.getLogger(__name__)


def load_specs(directory: Path) -> UseCases:
    """The use cases of ``directory``; none (with a warning) when it is missing or empty.

    An invalid spec stops the service at start, naming the file, key and line.
    """
    if not directory.is_dir():
        log.warning("use cases folder %s does not exist: no raw topic is consumed", directory)
        return UseCases()
    try:
        usecases = UseCases(load_usecases(spec_files(directory)))
    except UseCaseError as exc:
        raise ConfigError(f"invalid use case spec: {exc.message}") from None
    if not usecases:
        log.warning("no use case spec in %s: no raw topic is consumed", directory)
    return usecases


def salt_of(settings: IngestionSettings) -> bytes:
    secret = getattr(settings, "privacy_salt", None)
    salt = secret.get_secret_value().encode() if secret is not None else b""
    if not salt:
        log.warning("no privacy salt configured (AIF_PRIVACY_SALT): personal data is hashed with the "
                    "development salt")
    return salt or DEV_SALT


async def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int, replication: int,
                        kafka_options: Mapping[str, Any] | None = None) -> None:
    """Create the topics ingestion reads and writes when missing, so the group can join at once."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(kafka_options or {}))
    await admin.start()
    try:
        missing = set(names) - set(await admin.list_topics())
        if missing:
            await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=replication)
                                       for n in sorted(missing)])
    except Exception as exc:  # noqa: BLE001 - auto-creation on first produce is the fallback
        log.warning("could not create topics %s: %s", sorted(names), exc)
    finally:
        await admin.close()


def _stop_on_fatal(task: asyncio.Task[None]) -> None:
    if task.cancelled() or task.exception() is None:
        return
    log.critical("raw-topic pipeline failed; stopping the service", exc_info=task.exception())
    # Only where SIGTERM is handled (the service process serving until it): there it drains
    # and exits; embedded in another program (tests) the error is only logged.
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Core:
    """What both transports share: per use case rules, the raw dataset, the quality windows."""

    ingestors: dict[str, UseCaseIngestor]
    dataset: RawDataset
    quality: QualityTracker


def make_core(settings: IngestionSettings, meter: Meter) -> Core:
    usecases = load_specs(settings.usecases_dir or DEFAULT_DIR)
    salt = salt_of(settings)
    ingestors = {name: UseCaseIngestor(uc, salt=salt, max_payload_bytes=settings.max_payload_bytes)
                 for name, uc in usecases.items()}
    dataset = RawDataset(settings.data_dir, usecases, {n: i.privacy for n, i in ingestors.items()})
    quality = QualityTracker(usecases, meter, window_seconds=settings.quality_window_seconds,
                             window_records=settings.quality_window_records)
    return Core(ingestors, dataset, quality)


def kafka_options(settings: IngestionSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for the service's Kafka identity (SASL in the secure profile)."""
    return KafkaSecurity.from_settings(settings).client_kwargs()


def make_pipeline(settings: IngestionSettings, core: Core) -> RawPipeline:
    """The raw-topic pipeline over every loaded use case (not started)."""
    options = kafka_options(settings)
    return RawPipeline(
        settings.kafka_bootstrap, {settings.raw_topic(n): ing for n, ing in core.ingestors.items()},
        core.dataset, core.quality,
        TransactionalPublisher(settings.kafka_bootstrap, settings.transactional_id, kafka_options=options,
                               records_per_message=settings.records_per_message),
        group_id=settings.consumer_group, records_topic=settings.records_topic,
        dead_letter_topic=settings.dead_letter_topic, instance_id=settings.instance,
        max_batch=settings.max_batch, kafka_options=options)


async def build(settings: IngestionSettings, telemetry: Telemetry) -> Service:
    core = make_core(settings, telemetry.meter)
    ingestors, dataset, quality = core.ingestors, core.dataset, core.quality
    service = Service(RpcServer(settings.grpc_address, telemetry, security=server_security(settings),
                                drain_seconds=settings.drain_seconds))

    publisher = EventPublisher(settings.kafka_bootstrap, producer="ingestion",
                               security=KafkaSecurity.from_settings(settings))
    await publisher.start()
    service.closers.append(publisher.stop)
    push_publisher = TransactionalPublisher(settings.kafka_bootstrap, f"{settings.transactional_id}-grpc",
                                            kafka_options=kafka_options(settings),
                                            records_per_message=settings.records_per_message)
    await push_publisher.start()
    service.closers.append(push_publisher.stop)
    push = PushIngest(ingestors, dataset, quality, push_publisher, records_topic=settings.records_topic,
                      dead_letter_topic=settings.dead_letter_topic, max_items=settings.max_request_items)
    service.server.add_service(ingestion_service_pb2_grpc.add_IngestionServiceServicer_to_server,
                               IngestionServicer(push, dataset), SERVICE_NAME)

    reporter = QualityReporter(quality, publisher, settings.quality_topic)
    service.spawn("ingestion-quality", reporter.run(), stop=reporter.stop)

    if settings.consume and ingestors:
        await ensure_topics(settings.kafka_bootstrap, [*map(settings.raw_topic, ingestors), settings.records_topic,
                                                       settings.dead_letter_topic, settings.quality_topic],
                            settings.topic_partitions, settings.topic_replication, kafka_options(settings))
        pipeline = make_pipeline(settings, core)
        task = service.spawn("ingestion-pipeline", pipeline.run(), stop=pipeline.stop)
        task.add_done_callback(_stop_on_fatal)
    return service
