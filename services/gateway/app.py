"""Wiring of the gateway service: settings and telemetry in, a ready server out.

Two gRPC servers share the event loop: the business API (``GatewayService``, health,
reflection; the shared interceptor) on ``grpc_port``, and the Open Inference Protocol
on ``oip_port`` (no interceptor: its hot path is measured in microseconds; it checks
tokens itself, see :mod:`services.gateway.servicer`). Both servicers hand every
inference to the one :class:`~services.gateway.core.DataPlane`.
HTTP/JSON (KServe v2 REST and the business API, :mod:`services.gateway.http`) is served
on ``http_port`` by uvicorn on the same loop, over the same two servicers.

Start-up: follow the model-promoted topic first (a fresh consumer group reading from
the beginning; each alias keeps its newest change, so replayed history is harmless),
then ask the registry for the current aliases (retried in the background while it is
unreachable), then load the champions in Triton through its load call, each version's
config and files fetched from the registry (:mod:`services.gateway.bundles`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import grpc

from aifactory.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from aifactory.registry.v1 import events_pb2 as registry_events
from libs.auth import server_security
from libs.auth.tls import client_tls
from libs.bus import DeadLetters, EventConsumer, EventPublisher, KafkaSecurity
from libs.errors import ConfigError
from libs.rpc import RpcServer, channel
from libs.rpc.server import MAX_MESSAGE_BYTES
from libs.runtime import Service
from libs.telemetry import Telemetry
from libs.usecase import UseCase, UseCases
from libs.usecase.catalogue import Catalogue, Change, ChangeKind
from libs.usecase.follower import follow_catalogue, load_catalogue
from services.gateway.auth import OipAuth
from services.gateway.bundles import ModelSource, RegistryBundles, TritonRepository
from services.gateway.core import DataPlane
from services.gateway.directory import (
    AliasBook,
    ModelDirectory,
    RegistryDirectory,
    StaticDirectory,
    alias_events_handler,
)
from services.gateway.features import GrpcFeatureSource
from services.gateway.feedback import FeedbackRecorder, RecentPredictions, RegistryPredictions
from services.gateway.http import start_http
from services.gateway.instruments import observe
from services.gateway.models import ModelManager
from services.gateway.predlog import BulkPublisher, PredictionLog
from services.gateway.servicer import GatewayServicer, OipServicer
from services.gateway.settings import GatewaySettings
from services.gateway.triton import Triton
from services.gateway.writeahead import WriteAheadLog, wal_dir

log = logging.getLogger(__name__)

SERVICE_NAME = gateway_service_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


@dataclass
class Gateway(Service):
    """The built service, with what tests and benchmarks look at."""

    oip_port: int = 0
    http_port: int = 0
    models: ModelManager | None = None
    predlog: PredictionLog | None = None
    triton: Triton | None = None
    book: AliasBook | None = None


def wanted_usecases(settings: GatewaySettings) -> set[str]:
    """The use cases ``use_cases`` restricts this gateway to (empty: every one)."""
    return {u.strip() for u in settings.use_cases.split(",") if u.strip()}


def served_usecases(settings: GatewaySettings, catalogue: Catalogue) -> UseCases:
    """The catalogue's use cases this gateway serves now (its own live set, kept by
    :func:`build`'s catalogue listener)."""
    wanted = wanted_usecases(settings)
    missing = sorted(wanted - set(catalogue.usecases))
    if missing:
        log.warning(
            "AIF_GATEWAY_USE_CASES names %s, not in the catalogue (yet): served once applied",
            ", ".join(missing),
        )
    return UseCases({n: uc for n, uc in catalogue.usecases.items() if not wanted or n in wanted})


async def _bootstrap_aliases(directory: ModelDirectory, book: AliasBook, usecases: list[str]) -> None:
    """Current aliases from the directory; retried until it answers."""
    delay = 1.0
    while True:
        try:
            for state in await directory.aliases(usecases):
                book.apply(state)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the registry may start after us
            log.warning("cannot read aliases from the registry yet (%s); retrying in %.0fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def build(
    settings: GatewaySettings, telemetry: Telemetry, *, usecases: Mapping[str, UseCase] | None = None
) -> Gateway:
    """``usecases`` replaces the catalogue (tests)."""
    catalogue = await load_catalogue(settings, fixed=usecases)
    served = served_usecases(settings, catalogue)
    security = server_security(settings)
    token = settings.bearer_token()
    kafka_security = KafkaSecurity.from_settings(settings)

    triton = Triton(
        settings.triton_url,
        infer_timeout_s=settings.infer_timeout_s,
        health_interval_s=settings.health_interval_s,
        coalesce_inflight=settings.coalesce_inflight,
        coalesce_max_rows=settings.coalesce_max_rows,
        control_key=settings.triton_control_key.get_secret_value(),
    )
    book = AliasBook()
    # Versions reach Triton through its load call, with the registry's serving bundles (config
    # and files over gRPC), or, with no registry, from Triton's own model repository.
    calls_tls = client_tls(settings)  # TLS of its calls to the registry and the feature store
    registry_channel = (
        channel(settings.registry_target, calls_tls, token=token) if settings.registry_target else None
    )
    source: ModelSource = (
        TritonRepository(triton)
        if registry_channel is None
        else RegistryBundles(
            registry_channel, instance_kind=settings.triton_config_variant, timeout_s=settings.load_timeout_s
        )
    )
    models = ModelManager(
        served,
        book,
        triton,
        source,
        warmup_requests=settings.warmup_requests,
        retire_grace_s=settings.retire_grace_s,
        load_timeout_s=settings.load_timeout_s,
    )
    schemas = {name: served.schema for name, served in models.served.items()}

    publisher = EventPublisher(settings.kafka_bootstrap, producer="gateway", security=kafka_security)
    await publisher.start()
    bulk = BulkPublisher(settings.kafka_bootstrap, "gateway", **kafka_security.client_kwargs())
    await bulk.start()
    predlog = PredictionLog(
        bulk,
        settings.predictions_topic,
        served,
        schemas,
        salt=settings.privacy_salt.get_secret_value(),
        capacity=settings.predlog_capacity,
        batch=settings.predlog_batch,
        flush_ms=settings.predlog_flush_ms,
        meter=telemetry.meter,
        wal=WriteAheadLog(wal_dir(settings)) if settings.predlog_wal else None,
    )
    flusher = predlog.start()
    recent = RecentPredictions()
    fs_channel = channel(settings.featurestore_target, calls_tls, plain=True)
    plane = DataPlane(
        models,
        triton,
        GrpcFeatureSource(fs_channel, settings.feature_timeout_s, token),
        predlog,
        recent,
        log_oip=settings.predlog_oip,
    )
    feedback = FeedbackRecorder(
        publisher, settings.feedback_topic, served, recent, lookup_wait_s=settings.feedback_lookup_wait_s
    )
    servicer = GatewayServicer(plane, feedback)
    server = RpcServer(
        settings.grpc_address, telemetry, security=security, drain_seconds=settings.drain_seconds
    )
    server.add_service(gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server, servicer, SERVICE_NAME)

    # Aliases: the event stream first, so nothing between the registry's answer and the
    # consumer's start is missed; then the registry (or static settings).
    registry_directory = RegistryDirectory(registry_channel) if registry_channel is not None else None
    consumer = EventConsumer(
        settings.kafka_bootstrap,
        f"gateway-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        {settings.model_promoted_topic: [registry_events.AliasChanged]},
        # With a registry, each event is confirmed there before it moves an alias.
        alias_events_handler(book, served, registry=registry_directory),
        DeadLetters(publisher, settings.dead_letter_topic),
        auto_offset_reset="earliest",
        security=kafka_security,
    )
    service = Gateway(server, models=models, predlog=predlog, triton=triton, book=book)
    # Closed in reverse order: intake first (registered below), then the shadow calls, the
    # log's last flush, and the clients.
    service.closers += [
        triton.close,
        models.close,
        publisher.stop,
        bulk.stop,
        predlog.close,
        fs_channel.close,
        plane.close,
    ]
    service.watch(flusher)  # ends at predlog.close; before that, a dead flusher fails the service
    service.spawn("alias-events", consumer.run(), stop=consumer.stop)
    directories: list[ModelDirectory] = []
    if settings.static_aliases:
        directories.append(StaticDirectory(settings.static_aliases))
    if registry_channel is not None and registry_directory is not None:
        service.closers.append(registry_channel.close)
        directories.append(registry_directory)
        feedback.lookup = RegistryPredictions(registry_channel)
    bootstraps = [
        service.spawn(f"aliases-{type(d).__name__}", _bootstrap_aliases(d, book, list(served)), finishes=True)
        for d in directories
    ]
    wanted = wanted_usecases(settings)

    async def serve_usecase(change: Change) -> None:
        """A use case applied (or retired) while running: served (or no longer) at once."""
        name = change.name
        if wanted and name not in wanted:
            return
        if change.kind is ChangeKind.RETIRED:
            served.pop(name, None)
            await models.retire(name)
            return
        new = name not in served
        predlog.take_up(change.spec, models.take_up(change.spec).schema)
        served[name] = change.spec
        if new:
            # Its champion, should it have one already (a use case back from retirement).
            for d in directories:
                service.spawn(
                    f"aliases-{name}-{type(d).__name__}", _bootstrap_aliases(d, book, [name]), finishes=True
                )

    catalogue.listen(serve_usecase)

    oip = None
    address = settings.oip_address
    if address is not None:
        oip_auth = (
            None if settings.auth_mode == "off" else OipAuth(security.authenticator, security.authorizer)
        )
        oip = OipServicer(
            plane,
            models,
            triton,
            oip_auth,
            max_inflight_per_caller=settings.oip_max_inflight_per_caller,
            max_inflight_per_stream=settings.oip_max_inflight_per_stream,
        )
        oip_server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ]
        )
        oip.register(oip_server)
        tls = security.tls
        if tls is None:
            service.oip_port = oip_server.add_insecure_port(address)
        else:
            service.oip_port = oip_server.add_secure_port(
                address,
                grpc.ssl_server_credentials(
                    [(tls.key, tls.cert)],
                    root_certificates=tls.client_ca,
                    require_client_auth=tls.client_ca is not None,
                ),
            )
        if not service.oip_port:
            raise ConfigError(f"cannot listen on {address} (AIF_GATEWAY_OIP_PORT): address in use or invalid")
        await oip_server.start()
        service.closers.append(partial(oip_server.stop, settings.drain_seconds))
        log.info("Open Inference Protocol on port %d (triton %s)", service.oip_port, settings.triton_url)
    observe(telemetry.meter, triton, oip.stats if oip is not None else None)
    http = await start_http(
        settings, security, telemetry, servicer, oip or OipServicer(plane, models, triton, None)
    )
    if http is not None:
        service.http_port = http.port
        service.closers.append(http.stop)

    # Give the first loads a moment, so a gateway that starts beside a ready registry
    # and Triton answers at once; slower loads finish in the background.
    if bootstraps:
        await asyncio.wait(bootstraps, timeout=10.0)
    if not await models.wait_idle(min(settings.load_timeout_s, 30.0)):
        log.warning("models still loading; serving what is ready")
    await follow_catalogue(catalogue, service)
    return service
