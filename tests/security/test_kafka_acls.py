"""The secure Kafka profile: each service's principal may write only its own topics and read only
the topics it consumes; the broker itself refuses the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from aif.infra import KafkaSecureHandle, ensure_kafka_secure
from aifactory.trainer.v1 import events_pb2
from libs.auth.kafka_acls import ACCESS, PRODUCER, SERVICES, group_prefix, may_read, may_write, topics_of
from libs.bus import EventPublisher, KafkaSecurity, topics
from tests.security.conftest import record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

USE_CASES = ["loan_approval", "image_segments"]


@pytest.fixture(scope="module")
def secure() -> Iterator[KafkaSecureHandle]:
    handle = ensure_kafka_secure(use_cases=USE_CASES)
    yield handle
    handle.stop()


async def _write(handle: KafkaSecureHandle, principal: str, topic: str) -> bool:
    """True when the broker stored the message; False when it refused the topic."""
    producer = AIOKafkaProducer(
        bootstrap_servers=handle.bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        request_timeout_ms=10000,
        **handle.security(principal),
    )
    await producer.start()
    try:
        # Keyed: a compacted topic (the use-case catalogue) refuses a message without a key.
        await asyncio.wait_for(producer.send_and_wait(topic, b"probe", key=b"acl-probe"), 20)
        return True
    except TopicAuthorizationFailedError:
        return False
    finally:
        await producer.stop()


async def _read(handle: KafkaSecureHandle, principal: str, topic: str, group: str) -> bool:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=handle.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **handle.security(principal),
    )
    try:
        await consumer.start()
        await asyncio.wait_for(consumer.getmany(timeout_ms=500), 20)
        return True
    except (TopicAuthorizationFailedError, GroupAuthorizationFailedError):
        return False
    finally:
        await consumer.stop()


def _foreign_topic(principal: str) -> str:
    """A topic another service owns and this principal may not write."""
    for other in ACCESS:
        writes, _ = topics_of(ACCESS[other], USE_CASES)
        for topic in writes:
            if not may_write(principal, topic, USE_CASES):
                return topic
    raise AssertionError(principal)


async def test_each_principal_writes_its_own_topics_and_is_refused_others(secure: KafkaSecureHandle) -> None:
    checks = 0
    for principal in ACCESS:
        writes, _ = topics_of(ACCESS[principal], USE_CASES)
        for topic in writes:
            assert await _write(secure, principal, topic), f"{principal} may write {topic}"
            checks += 1
        foreign = _foreign_topic(principal)
        assert not await _write(secure, principal, foreign), f"broker let {principal} write {foreign}"
        checks += 1
    record("kafka_acl_checks", checks)


async def test_a_service_writing_another_services_topic_is_refused_through_libs_bus(
    secure: KafkaSecureHandle,
) -> None:
    creds = secure.security("trainer")
    security = KafkaSecurity(
        "SASL_PLAINTEXT", creds["sasl_mechanism"], "trainer", creds["sasl_plain_password"]
    )
    async with EventPublisher(secure.bootstrap_servers, producer="trainer", security=security) as pub:
        await pub.publish(topics.MODEL_TRAINED, events_pb2.ModelTrained(), use_case=USE_CASES[0])
        with pytest.raises(TopicAuthorizationFailedError):
            await pub.publish(topics.MODEL_PROMOTED, events_pb2.ModelTrained(), use_case=USE_CASES[0])
    record("kafka_acl_checks", 2)


async def test_each_service_reads_what_it_consumes_and_nothing_else(secure: KafkaSecureHandle) -> None:
    checks = 0
    for service in SERVICES:
        _, reads = topics_of(ACCESS[service], USE_CASES)
        group = f"{group_prefix(service)}.acl-test"
        assert await _read(secure, service, reads[0], group), f"{service} may read {reads[0]}"
        unreadable = next(
            t
            for t in topics_of(ACCESS["gateway"], USE_CASES)[0] + [topics.RECORDS]
            if not may_read(service, t, USE_CASES)
        )
        assert not await _read(secure, service, unreadable, group), f"{service} read {unreadable}"
        checks += 2
    # The right topic with a consumer group outside the service's prefix is refused too.
    assert not await _read(secure, "evaluator", topics.MODEL_TRAINED, "someone-elses-group")
    # Producers write raw topics; they read nothing.
    assert not await _read(secure, PRODUCER, topics.raw(USE_CASES[0]), "aif-producer")
    record("kafka_acl_checks", checks + 2)


async def test_unauthenticated_clients_get_nothing(secure: KafkaSecureHandle) -> None:
    creds = {**secure.security("gateway"), "sasl_plain_password": "wrong-password"}
    producer = AIOKafkaProducer(bootstrap_servers=secure.bootstrap_servers, request_timeout_ms=5000, **creds)
    with pytest.raises(KafkaError):
        await asyncio.wait_for(producer.start(), 30)
    await producer.stop()
    plaintext = AIOKafkaProducer(bootstrap_servers=secure.bootstrap_servers, request_timeout_ms=3000)
    with pytest.raises((KafkaConnectionError, KafkaError, asyncio.TimeoutError)):
        await asyncio.wait_for(plaintext.start(), 15)
    await plaintext.stop()
    record("kafka_acl_checks", 2)


def test_the_acl_table_is_least_privilege() -> None:
    """Static properties of the table: nobody but the owner writes a topic, producers read nothing."""
    owners: dict[str, list[str]] = {}
    for principal, access in ACCESS.items():
        for topic in topics_of(access, USE_CASES)[0]:
            owners.setdefault(topic, []).append(principal)
    shared = {t: o for t, o in owners.items() if len(o) > 1 and t != topics.DEAD_LETTER}
    assert not shared, f"topics with several writers: {shared}"
    assert not topics_of(ACCESS[PRODUCER], USE_CASES)[1]
    assert set(SERVICES) == {
        "ingestion",
        "featurestore",
        "trainer",
        "evaluator",
        "registry",
        "gateway",
        "monitor",
    }


def test_the_broker_enforces_exactly_the_table(secure: KafkaSecureHandle) -> None:
    """No ACL beyond the table (stale ones from an older table are removed), none missing."""
    from aif.infra._proc import run_async
    from aif.infra.kafka_secure import broker_acls
    from libs.auth.kafka_acls import ALLOW, bindings

    held = run_async(lambda: broker_acls(secure.bootstrap_servers, secure.security("admin")))
    want = {
        (b.principal, int(b.resource_type), b.resource, int(b.pattern), int(b.operation), b.host, ALLOW)
        for b in bindings(USE_CASES)
    }
    ours = {a for a in held if a[0].removeprefix("User:") in ACCESS}
    assert ours == want
    assert not {a for a in held if a[0] not in {f"User:{p}" for p in ACCESS}}, "ACLs for unknown principals"
    record("kafka_acl_checks", len(want))
