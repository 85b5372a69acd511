"""Wiring of the featurestore service: settings and telemetry in, a ready server out.

One process: the gRPC API (online features, training sets) and the stream processor
(a faust app on the same asyncio loop) that keeps the features up to date.
The use cases are the catalogue's (:mod:`libs.usecase.follower`): one applied while the
service runs gets its Feast objects applied and its offline datasets opened, then the
stream computes its features; no restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from aifactory.featurestore.v1 import featurestore_service_pb2, featurestore_service_pb2_grpc
from libs.auth import server_security
from libs.bus import EventPublisher, KafkaSecurity
from libs.errors import Unavailable
from libs.rpc import RpcServer
from libs.runtime import WORKER_FAILED, Service
from libs.telemetry import Telemetry
from libs.usecase import UseCase
from libs.usecase.catalogue import Change, ChangeKind
from libs.usecase.follower import follow_catalogue, load_catalogue
from services.featurestore.batch import RecordProcessor
from services.featurestore.consumers import FeatureStream
from services.featurestore.core import FeatureStoreCore
from services.featurestore.servicer import FeatureStoreServicer
from services.featurestore.settings import FeatureStoreSettings

SERVICE_NAME = featurestore_service_pb2.DESCRIPTOR.services_by_name["FeatureStoreService"].full_name
log = logging.getLogger(__name__)

# Exit status after a fatal stream error, the same as after any dead background task
# (EX_SOFTWARE): the supervisor restarts the process.
FATAL_EXIT = WORKER_FAILED


def exit_on_fatal(exc: BaseException) -> None:
    """Stop at once, without committing anything more: the restart resumes from the last commit."""
    log.critical("stream processor failed; exiting for a restart: %r", exc, exc_info=exc)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(FATAL_EXIT)


async def ensure_topics(
    settings: FeatureStoreSettings,
    names: Iterable[str],
    *,
    wait_for: str | None = None,
    timeout_s: float = 30.0,
) -> dict[str, int]:
    """Create the topics it reads and writes when missing, so the consumer group can join at once.

    Returns the partition count of each topic it could describe. A topic just created may
    answer without its partitions for a moment (no leader yet): ``wait_for``'s count is
    asked again until known or ``timeout_s`` passes (the stream's topology depends on it).
    """
    names = list(names)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, **KafkaSecurity.from_settings(settings).client_kwargs()
    )
    await admin.start()
    try:
        try:
            missing = set(names) - set(await admin.list_topics())
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(n, num_partitions=settings.partitions, replication_factor=1)
                        for n in sorted(missing)
                    ]
                )
        except Exception as exc:  # noqa: BLE001 - another process may have created them first
            log.warning("could not create topics %s: %s", sorted(names), exc)
        deadline = asyncio.get_running_loop().time() + timeout_s
        counts: dict[str, int] = {}
        while True:
            try:
                counts = {
                    t["topic"]: len(t["partitions"])
                    for t in await admin.describe_topics(names)
                    if not t.get("error_code") and t["partitions"]
                }
            except Exception as exc:  # noqa: BLE001 - asked again until the deadline
                log.warning("could not describe topics %s: %s", sorted(names), exc)
            if wait_for is None or wait_for in counts or asyncio.get_running_loop().time() > deadline:
                return counts
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def build(
    settings: FeatureStoreSettings,
    telemetry: Telemetry,
    *,
    on_fatal: Callable[[BaseException], None] = exit_on_fatal,
    usecases: Mapping[str, UseCase] | None = None,
) -> Service:
    """The gRPC API over the core and, with ``stream_enabled``, the stream processor as a
    background task of the service. ``usecases`` replaces the catalogue (tests)."""
    if settings.log_level != "DEBUG":
        for name in ("faust", "mode", "feast", "services.featurestore.faust_app"):
            logging.getLogger(name).setLevel(logging.WARNING)
    catalogue = await load_catalogue(settings, fixed=usecases)
    core = await asyncio.to_thread(FeatureStoreCore.open, settings, catalogue.usecases)
    server = RpcServer(
        settings.grpc_address,
        telemetry,
        security=server_security(settings),
        drain_seconds=settings.drain_seconds,
    )
    server.add_service(
        featurestore_service_pb2_grpc.add_FeatureStoreServiceServicer_to_server,
        FeatureStoreServicer(core),
        SERVICE_NAME,
    )
    service = Service(server)

    async def close_core() -> None:
        await asyncio.to_thread(core.close)

    service.closers.append(close_core)
    stream: FeatureStream | None = None
    if settings.stream_enabled:
        counts = await ensure_topics(
            settings,
            [
                t
                for t in (
                    settings.records_topic,
                    settings.feedback_topic,
                    settings.dead_letter_topic,
                    settings.features_written_topic,
                )
                if t
            ],
            wait_for=settings.records_topic,
        )
        # Ingestion keys each record by <use_case>/<entity_id> with Kafka's default (murmur2)
        # partitioner, which faust's producer also uses: with as many partitions as the state
        # table, the records topic is already partitioned by entity and the repartition hop
        # (a second produce and consume of every record) would only cost time.
        if settings.records_topic not in counts:
            # Guessing could flip the topology between restarts and strand records forwarded
            # to the repartition topic: refuse to start instead (the supervisor retries).
            raise Unavailable(f"could not read the partition count of {settings.records_topic}")
        repartition = counts[settings.records_topic] != settings.partitions
        if repartition:
            log.info(
                "records topic %s has %s partitions, the state table %d: repartitioning by entity",
                settings.records_topic,
                counts.get(settings.records_topic, "unknown"),
                settings.partitions,
            )
        publisher = EventPublisher(
            settings.kafka_bootstrap, producer="featurestore", security=KafkaSecurity.from_settings(settings)
        )
        await publisher.start()
        service.closers.append(publisher.stop)
        # Records consumed where ingestion placed them must hash there (a batched record has no key).
        processor = RecordProcessor(
            catalogue.usecases, require_key=True, partitions=None if repartition else settings.partitions
        )
        # faust does not create its data folder; a feature store that starts before any use
        # case exists has written nothing there yet.
        core.layout.faust_dir.mkdir(parents=True, exist_ok=True)
        stream = FeatureStream(
            settings,
            processor,
            core.writer,
            publisher,
            datadir=str(core.layout.faust_dir),
            telemetry=telemetry,
            on_fatal=on_fatal,
            repartition=repartition,
            catalogue=catalogue,
        )
        service.spawn("featurestore-stream", stream.run(), stop=stream.stop)

    async def build_features(change: Change) -> None:
        """A use case applied while running: its Feast view and datasets, then the stream
        computes its features; a retired one is no longer served (its data is kept)."""
        if change.kind is ChangeKind.RETIRED:
            if stream is not None:
                stream.drop(change.name)
            core.drop(change.name)
            return
        await asyncio.to_thread(core.take_up, change.spec)
        if stream is not None:
            stream.take_up(change.spec)

    catalogue.listen(build_features)
    await follow_catalogue(catalogue, service)
    return service
