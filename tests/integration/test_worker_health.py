"""A dead worker is never healthy: each of the seven services, as its own process, loses
its background consumer to a real failure; its health answers NOT_SERVING and the
process exits with ``WORKER_FAILED`` (70) within a bound, so a supervisor restarts it.

The failures:
- five :class:`~libs.bus.EventConsumer` services (trainer, evaluator, registry, gateway,
  monitor) and the feature store's stream: an undecodable event whose dead letter cannot
  be published (2 MiB once decompressed: the broker takes it gzipped, the dead-letter
  producer refuses it, ``MessageSizeTooLargeError``);
- ingestion: a second producer takes over its transactional id (a zombie instance), so
  its next transaction is fenced and the pipeline stops.

Every service gets topics and consumer groups of its own, so nothing else on the broker
is touched. The feature store exits at once on a fatal stream error, without draining
(nothing more may be committed), so its health is checked as unreachable rather than
answered.
"""

from __future__ import annotations

import asyncio
import importlib
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aif.stack import SERVICES, Stack
from libs.rpc.healthcheck import check
from libs.runtime import WORKER_FAILED
from libs.settings import ServiceSettings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

PORT_OFFSET = 12800  # see aif.stack for the offsets in use
# From the failure's cause to the process's exit (the failure itself, a drain, closing).
EXIT_WITHIN_S = 40.0
# Undecodable (no event headers) and over the dead-letter producer's 1 MiB request limit.
POISON = b"\0" * (2 * 1024 * 1024)
# The topic each service's consumer is made to fail on, by its setting.
POISONED = {
    "trainer": "training_requested_topic",
    "evaluator": "model_trained_topic",
    "registry": "evaluated_topic",
    "gateway": "model_promoted_topic",
    "monitor": "feedback_topic",
    "featurestore": "records_topic",
}
INGESTION_USE_CASE = "loan_approval"


def _settings_class(name: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{name}.settings")
    return next(
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, ServiceSettings) and v.service == name
    )


def _isolated(run: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Environment giving every service topics, groups and ids of this run only; and,
    per service, the topic name of each of its topic settings."""
    env: dict[str, str] = {}
    topics: dict[str, dict[str, str]] = {}
    for name in SERVICES:
        prefix = f"AIF_{name.upper()}_"
        fields = _settings_class(name).model_fields
        topics[name] = {}
        for field, info in fields.items():
            # The catalogue is one topic for all (AIF_USECASES_TOPIC, set by the fixture).
            if field.endswith("_topic") and info.default and field != "usecases_topic":
                topics[name][field] = f"{run}.{name}.{info.default}"
                env[prefix + field.upper()] = topics[name][field]
        if "consumer_group" in fields:
            env[prefix + "CONSUMER_GROUP"] = f"{run}-{name}"
    env["AIF_INGESTION_RAW_TOPIC_PATTERN"] = f"{run}.ingestion.{{use_case}}.raw"
    env["AIF_INGESTION_INSTANCE_ID"] = "only"
    env["AIF_FEATURESTORE_APP_ID"] = f"{run}-featurestore"
    for name in SERVICES:
        env[f"AIF_{name.upper()}_DRAIN_SECONDS"] = "1"
    return env, topics


@pytest.fixture(scope="module")
def stack(kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, Any]]]:  # type: ignore[no-untyped-def]
    run = f"wh{uuid.uuid4().hex[:8]}"
    env, topics = _isolated(run)
    poisoned = {name: topics[name][field] for name, field in POISONED.items()}
    # The poisoned topics exist before the consumers subscribe (one partition each; the
    # records topic with the feature store's own count, so no repartition hop).
    asyncio.run(_create_topics(kafka.bootstrap_servers, poisoned))
    stack = Stack(
        tmp_path_factory.mktemp("logs"),
        port_offset=PORT_OFFSET,
        data_root=tmp_path_factory.mktemp("state"),
        env={"AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers, "AIF_USECASES_TOPIC": f"{run}.usecases", **env},
    )
    stack.start(timeout=90)  # the seven start in parallel
    try:
        stack.apply_usecases()  # the shipped specs, through the registry (the raw topics follow)
    except BaseException:
        stack.stop()
        raise
    context = {
        "bootstrap": kafka.bootstrap_servers,
        "poisoned": poisoned,
        "raw_topic": f"{run}.ingestion.{INGESTION_USE_CASE}.raw",
        "transactional_id": f"{run}-ingestion-only",
    }
    yield stack, context
    stack.stop()


async def _create_topics(bootstrap: str, poisoned: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topic, num_partitions=3 if name == "featurestore" else 1, replication_factor=1)
                for name, topic in poisoned.items()
            ]
        )
    finally:
        await admin.close()


async def _poison(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, compression_type="gzip", max_request_size=len(POISON) + 4096
    )
    await producer.start()
    try:
        # Every partition: whichever a consumer owns, it meets the poison.
        for partition in sorted(await producer.partitions_for(topic)):
            await producer.send_and_wait(topic, POISON, partition=partition)
    finally:
        await producer.stop()


async def _fence(bootstrap: str, transactional_id: str, raw_topic: str) -> None:
    """Take the transactional id over (fencing the service's producer), then give the
    service a record to ingest, so its next transaction meets the fence."""
    zombie = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id)
    await zombie.start()
    try:
        await zombie.begin_transaction()
        await zombie.abort_transaction()
    finally:
        await zombie.stop()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(raw_topic, b'{"entity_id": "e1"}')
    finally:
        await producer.stop()


class _HealthWatch:
    """Every status the service's health Watch stream answers (server-wide, ""), until
    the stream ends; collected in a thread so the test can wait on the process too."""

    def __init__(self, target: str) -> None:
        self.statuses: queue.Queue[int] = queue.Queue()
        self._channel = grpc.insecure_channel(target)
        self._stream = health_pb2_grpc.HealthStub(self._channel).Watch(health_pb2.HealthCheckRequest())
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for reply in self._stream:
                self.statuses.put(reply.status)
        except grpc.RpcError:
            pass  # the server went away

    def saw(self, status: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                if self.statuses.get(timeout=left) == status:
                    return True
            except queue.Empty:
                return False
        return False

    def close(self) -> None:
        self._stream.cancel()
        self._channel.close()


@pytest.mark.parametrize("name", list(SERVICES))
def test_a_dead_worker_turns_health_not_serving_and_exits_non_zero(
    stack: tuple[Stack, dict[str, Any]], name: str
) -> None:
    services, context = stack
    svc = services.running[name]
    assert svc.process.poll() is None and check(svc.target), f"{name} not serving before the failure"
    watch = _HealthWatch(svc.target)
    try:
        assert watch.saw(health_pb2.HealthCheckResponse.SERVING, 5)
        started = time.monotonic()
        if name == "ingestion":
            asyncio.run(_fence(context["bootstrap"], context["transactional_id"], context["raw_topic"]))
        else:
            asyncio.run(_poison(context["bootstrap"], context["poisoned"][name]))
        if name != "featurestore":
            # Answered by the live process, before it stops: not a connection error.
            assert watch.saw(health_pb2.HealthCheckResponse.NOT_SERVING, EXIT_WITHIN_S), (
                f"{name} kept answering SERVING after its worker died; see {svc.log_path}"
            )
        try:
            code = svc.process.wait(max(1.0, EXIT_WITHIN_S - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{name} still running {EXIT_WITHIN_S:.0f}s after its worker died; see {svc.log_path}"
            )
    finally:
        watch.close()
    assert code == WORKER_FAILED, f"{name} exited with {code}; see {svc.log_path}"
    assert not check(svc.target, timeout=0.5)
    log = Path(svc.log_path).read_text(errors="replace")
    assert "NOT_SERVING" in log or name == "featurestore", log[-2000:]
