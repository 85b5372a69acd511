"""Shared by the secure-Kafka suites: a probe write, and a use case applied or retired at run
time as the registry publishes it on the live catalogue."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import ClusterAuthorizationFailedError, TopicAuthorizationFailedError
from google.protobuf.timestamp_pb2 import Timestamp

from aif.infra import KafkaSecureHandle
from aifactory.common.v1 import common_pb2
from aifactory.registry.v1 import events_pb2 as registry_events
from libs.bus import EventPublisher, Outgoing, topics
from libs.usecase import DEFAULT_DIR, parse_usecase

# Applied at run time through the live catalogue (as the registry publishes ApplyUseCase).
RUNTIME = "attack_runtime"
TEMPLATE = "loan_approval"


async def write(bootstrap: str, security: dict[str, Any], topic: str, timeout: float = 20) -> bool:
    """True when the broker stored the message; False when it refused the topic."""
    producer_ = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", request_timeout_ms=10000, **security
    )
    try:
        await asyncio.wait_for(producer_.start(), 30)
        await asyncio.wait_for(producer_.send_and_wait(topic, b"attack", key=b"attack"), timeout)
        return True
    except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError):
        # A principal with no WRITE anywhere cannot even start an idempotent producer.
        return False
    finally:
        await producer_.stop()


def catalogue_entry(state: int) -> Outgoing:
    """``RUNTIME`` as the registry publishes it on ApplyUseCase (RetireUseCase: ``state`` retired)."""
    text = (
        (DEFAULT_DIR / f"{TEMPLATE}.yaml").read_text().replace(f"name: {TEMPLATE}\n", f"name: {RUNTIME}\n", 1)
    )
    assert parse_usecase(text, RUNTIME).name == RUNTIME
    now = Timestamp()
    now.GetCurrentTime()
    event = registry_events.UseCaseChanged(
        use_case=RUNTIME,
        version=1,
        state=state,  # type: ignore[arg-type]
        spec_yaml=text,
        spec_sha256=hashlib.sha256(text.encode()).hexdigest(),
        actor=common_pb2.Actor(subject="attack-tests", roles=["admin"]),
        changed_at=now,
        reason="a use case applied at run time",
    )
    return Outgoing(topics.USECASES, event, use_case=RUNTIME, key=RUNTIME)


async def publish_as_registry(secure: KafkaSecureHandle, entry: Outgoing) -> None:
    async with EventPublisher(
        secure.bootstrap_servers, producer="registry", security=secure.secure.kafka_security("registry")
    ) as publisher:
        await publisher.publish_many([entry])
