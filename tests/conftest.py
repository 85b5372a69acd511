"""Shared fixtures: real infrastructure, started when missing and reused when running."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aif import infra
from libs.telemetry import setup_telemetry

# At the end of every run, every log written during it is searched for tokens, secrets and
# personal data (issue 7, "Must show").
pytest_plugins = ["tests.security.log_search"]

# The tests' broker is the open local one: every service process they start (inheriting this
# environment) is told PLAINTEXT is local development (libs.bus.security.require_kafka_tls).
os.environ.setdefault("AIF_KAFKA_ALLOW_PLAINTEXT", "1")


@pytest.fixture(scope="session")
def kafka() -> Iterator[infra.KafkaHandle]:
    handle = infra.ensure_kafka()
    yield handle
    handle.stop()


@pytest.fixture
async def new_topic(kafka: infra.KafkaHandle) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Creates uniquely named topics, so tests never see each other's events."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()

    async def create(prefix: str = "test", partitions: int = 1) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        await admin.create_topics([NewTopic(name, partitions, 1)])
        return name

    yield create
    await admin.close()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span finished during the test, from the real OpenTelemetry SDK."""
    telemetry = setup_telemetry("tests")
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    telemetry.tracer_provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()
