"""The secure Kafka profile (SASL_SSL): each service's principal may write only its own topics and
read only the topics it consumes, each use case's producer only its own raw topic; the broker
itself refuses the rest."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from aif.infra import KafkaSecureHandle
from aifactory.registry.v1 import events_pb2 as registry_events
from aifactory.trainer.v1 import events_pb2
from libs.auth.kafka_acls import (
    ACCESS,
    SERVICES,
    group_prefix,
    is_managed,
    may_read,
    may_write,
    producer,
    topics_of,
)
from libs.bus import EventPublisher, topics
from tests.security.conftest import record
from tests.security.kafka_support import RUNTIME, catalogue_entry, publish_as_registry, write

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

USE_CASES = ["loan_approval", "image_segments"]
PRODUCERS = [producer(uc) for uc in USE_CASES]


def _writes(principal: str) -> list[str]:
    """The topics the table lets ``principal`` write (a producer: its use case's raw topic)."""
    if principal in PRODUCERS:
        return [topics.raw(principal.removeprefix("producer."))]
    return topics_of(ACCESS[principal], USE_CASES)[0]


@pytest.fixture
def secure(kafka_secure: KafkaSecureHandle) -> KafkaSecureHandle:
    assert set(USE_CASES) <= set(kafka_secure.use_cases)
    return kafka_secure


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
        # On the catalogue a tombstone: its followers skip it instead of logging a bad entry.
        value = None if topic == topics.USECASES else b"probe"
        await asyncio.wait_for(producer.send_and_wait(topic, value, key=b"acl-probe"), 20)
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
    for other in [*ACCESS, *PRODUCERS]:
        for topic in _writes(other):
            if not may_write(principal, topic, USE_CASES):
                return topic
    raise AssertionError(principal)


async def test_each_principal_writes_its_own_topics_and_is_refused_others(secure: KafkaSecureHandle) -> None:
    checks = 0
    for principal in [*ACCESS, *PRODUCERS]:
        for topic in _writes(principal):
            assert await _write(secure, principal, topic), f"{principal} may write {topic}"
            checks += 1
        foreign = _foreign_topic(principal)
        assert not await _write(secure, principal, foreign), f"broker let {principal} write {foreign}"
        checks += 1
    record("kafka_acl_checks", checks)


async def test_a_service_writing_another_services_topic_is_refused_through_libs_bus(
    secure: KafkaSecureHandle,
) -> None:
    security = secure.secure.kafka_security("trainer")
    assert security.protocol == "SASL_SSL"
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
    assert not await _read(secure, PRODUCERS[0], topics.raw(USE_CASES[0]), "aif-producer")
    record("kafka_acl_checks", checks + 2)


async def test_the_gateway_reads_its_prediction_log_back_without_a_group(secure: KafkaSecureHandle) -> None:
    """What the prediction log does before it sends again a publish of unknown outcome;
    the trainer, which does not consume predictions, is refused the same read."""
    from services.gateway.predlog import BulkPublisher

    since = int(time.time() * 1000) - 60_000
    for principal, allowed in (("gateway", True), ("trainer", False)):
        bulk = BulkPublisher(secure.bootstrap_servers, principal, **secure.security(principal))
        await bulk.start()
        try:
            if allowed:
                assert await bulk.logged_among(topics.PREDICTIONS, {b"no-such-event"}, since) == set()
            else:
                with pytest.raises(TopicAuthorizationFailedError):
                    await bulk.logged_among(topics.PREDICTIONS, {b"no-such-event"}, since)
        finally:
            await bulk.stop()
    record("kafka_acl_checks", 2)


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
    for principal in [*ACCESS, *PRODUCERS]:
        for topic in _writes(principal):
            owners.setdefault(topic, []).append(principal)
    shared = {t: o for t, o in owners.items() if len(o) > 1 and t != topics.DEAD_LETTER}
    assert not shared, f"topics with several writers: {shared}"
    assert not any(may_read(p, t, USE_CASES) for p in PRODUCERS for t in owners)
    from libs.auth.kafka_acls import INGESTION_QUALITY_STATE
    from services.ingestion.settings import IngestionSettings

    assert IngestionSettings.model_fields["quality_state_topic"].default == INGESTION_QUALITY_STATE
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

    # The broker's use cases: these, and any the live catalogue holds (set up with them).
    use_cases = secure.secure.setup(USE_CASES, with_catalogue=True)
    held = run_async(lambda: broker_acls(secure.bootstrap_servers, secure.security("admin")))
    want = {
        (b.principal, int(b.resource_type), b.resource, int(b.pattern), int(b.operation), b.host, ALLOW)
        for b in bindings(use_cases)
    }
    ours = {a for a in held if is_managed(a[0])}
    assert ours == want
    assert not {a for a in held if not is_managed(a[0])}, "ACLs for unknown principals"
    record("kafka_acl_checks", len(want))


async def test_the_audit_checkpoint_topic_keeps_every_checkpoint(secure: KafkaSecureHandle) -> None:
    """The registry may only append to it (no CREATE on the secure broker): the admin's setup
    makes it with no expiry and no compaction, so no checkpoint ever leaves it."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from libs.bus import topics

    admin = AIOKafkaAdminClient(bootstrap_servers=secure.bootstrap_servers, **secure.security("admin"))
    await admin.start()
    try:
        replies = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.AUDIT_CHECKPOINTS, None)]
        )
    finally:
        await admin.close()
    configs = {str(e[0]): str(e[1]) for r in replies for res in r.resources for e in res[4]}
    assert configs["retention.ms"] == "-1" and configs["retention.bytes"] == "-1"
    assert configs["cleanup.policy"] == "delete"


async def test_following_the_catalogue_sets_up_a_use_case_applied_at_run_time(
    secure: KafkaSecureHandle,
) -> None:
    """``python -m aif.infra kafka-acls --follow``: ApplyUseCase's catalogue entry gives the new
    use case its producer and ACLs with no restart; RetireUseCase's takes them away."""
    name = RUNTIME
    stop = asyncio.Event()
    follower = asyncio.create_task(secure.secure.follow_catalogue(stop))

    async def writes() -> bool:
        try:
            return await write(secure.bootstrap_servers, secure.security(producer(name)), topics.raw(name), 5)
        except (TimeoutError, KafkaError, KeyError):  # not set up yet
            return False

    async def until(expected: bool) -> None:
        for _ in range(60):
            assert not follower.done(), follower
            if await writes() == expected:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{producer(name)} writes {topics.raw(name)}: still {not expected}")

    try:
        await publish_as_registry(secure, catalogue_entry(registry_events.USE_CASE_STATE_ACTIVE))
        await until(True)
        await publish_as_registry(secure, catalogue_entry(registry_events.USE_CASE_STATE_RETIRED))
        await until(False)
    finally:
        stop.set()
        await follower
    record("kafka_acl_checks", 2)
