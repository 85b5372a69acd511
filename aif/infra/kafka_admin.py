"""What admin does to the secure broker over Kafka's own protocol: topics, ACLs, SCRAM users.

aiokafka's admin client has no ACL or SCRAM method yet, so DescribeAcls/CreateAcls/
DeleteAcls and AlterUserScramCredentials are sent by its low-level client; a JVM start per
``kafka-acls`` or ``kafka-configs`` invocation would cost about a minute on two cores.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from ._proc import InfraError, NotReady

# Kafka protocol wildcards (ResourceType/PatternType/AclOperation/AclPermissionType ANY).
_ANY = 1
Acl = tuple[str, int, str, int, int, str, int]  # principal, type, name, pattern, operation, host, permission


async def create_topics(
    bootstrap: str, security: dict[str, Any], names: Iterable[str], partitions: int = 3
) -> None:
    """Creates the topics that do not exist yet."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **security)
    try:
        await admin.start()
        missing = sorted(set(names) - set(await admin.list_topics()))
        if missing:
            from libs.auth.kafka_acls import TOPIC_CONFIGS
            from libs.bus import topics

            # The catalogue's topic is compacted, with one partition (libs.bus.topics).
            reply = await admin.create_topics(
                [
                    NewTopic(
                        n,
                        topics.PARTITIONS.get(n, partitions),
                        1,
                        topic_configs=topics.CONFIGS.get(n) or TOPIC_CONFIGS.get(n, {}),
                    )
                    for n in missing
                ]
            )
            # 36: TOPIC_ALREADY_EXISTS (a concurrent creator won the race).
            bad = [(e[0], e[1]) for e in reply.topic_errors if e[1] not in (0, 36)]
            if bad:
                raise InfraError("kafka-secure", f"creating topics failed: {bad}")
    except (KafkaError, OSError) as exc:
        raise NotReady(f"topics: {exc!r}") from exc
    finally:
        await admin.close()


async def sync_acls(
    bootstrap: str, security: dict[str, Any], wanted: Iterable[Any], managed: Any
) -> tuple[int, int]:
    """Makes the broker's ACLs of the principals ``managed(principal)`` accepts exactly
    ``wanted``: creates what is missing, deletes what the table no longer grants (ACLs
    outlive the code that made them). Returns (created, deleted).
    """
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest

    from libs.auth.kafka_acls import ALLOW

    want = {
        (a.principal, int(a.resource_type), a.resource, int(a.pattern), int(a.operation), a.host, ALLOW)
        for a in wanted
    }
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **security)
    try:
        await client.bootstrap()
        node = client.get_random_node()
        have = {acl for acl in await _describe_acls(client, node) if managed(acl[0])}
        for principal, rtype, name, pattern, op, host, perm in sorted(want - have):
            reply = await client.send(
                node, CreateAclsRequest(rtype, name, pattern, principal, host, op, perm)
            )
            _check("CreateAcls", name, [(c, m) for c, m in reply.creation_responses])
        for principal, rtype, name, pattern, op, host, perm in sorted(have - want):
            reply = await client.send(
                node, DeleteAclsRequest(rtype, name, pattern, principal, host, op, perm)
            )
            _check("DeleteAcls", name, [(r[0], r[1]) for r in reply.filter_responses])
    finally:
        await client.close()
    return len(want - have), len(have - want)


async def _describe_acls(client: Any, node: int) -> set[Acl]:
    """Every ACL the broker holds."""
    from aiokafka.protocol.admin import DescribeAclsRequest

    reply = await client.send(node, DescribeAclsRequest(_ANY, None, _ANY, None, None, _ANY, _ANY))
    _check("DescribeAcls", "*", [(reply.error_code, reply.error_message)])
    return {
        (principal, rtype, name, pattern, op, host, perm)
        for rtype, name, pattern, acls in reply.resources
        for principal, host, op, perm in acls
    }


def _check(request: str, resource: str, errors: list[tuple[int, str | None]]) -> None:
    bad = [(code, message) for code, message in errors if code]
    if bad:
        raise InfraError("kafka-secure", f"{request} {resource}: {bad}")


async def broker_acls(bootstrap: str, security: dict[str, Any]) -> set[Acl]:
    """What the broker enforces now (tests compare it with the table)."""
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **security)
    try:
        await client.bootstrap()
        return await _describe_acls(client, client.get_random_node())
    finally:
        await client.close()


# -- SCRAM users (KIP-554: AlterUserScramCredentials, API key 51, flexible from v0) ------------

SCRAM_SHA_512 = 2  # org.apache.kafka.clients.admin.ScramMechanism
SCRAM_ITERATIONS = 8192  # Kafka's default for kafka-configs


class _AlterUserScramCredentialsResponse_v0(Response):  # noqa: N801 - Kafka's message name
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterUserScramCredentialsRequest_v0(RequestStruct):  # noqa: N801
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentials(Request[_AlterUserScramCredentialsRequest_v0]):
    """Creates or replaces SCRAM-SHA-512 users. The password never leaves this process:
    the broker is sent a salt and the salted password (RFC 5802 ``Hi``), as kafka-configs does."""

    API_KEY: ClassVar[int] = 51

    def __init__(self, users: Mapping[str, str]) -> None:
        self._upsertions: list[tuple[str, int, int, bytes, bytes, dict[int, bytes]]] = []
        for name, password in users.items():
            salt = secrets.token_bytes(32)
            salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
            self._upsertions.append((name, SCRAM_SHA_512, SCRAM_ITERATIONS, salt, salted, {}))

    def build(
        self, request_struct_class: type[_AlterUserScramCredentialsRequest_v0]
    ) -> _AlterUserScramCredentialsRequest_v0:
        return request_struct_class([], self._upsertions, {})


async def upsert_scram_users(bootstrap: str, security: dict[str, Any], users: Mapping[str, str]) -> None:
    """Creates (or resets) the SCRAM-SHA-512 credentials of ``users`` (name → password)."""
    if not users:
        return
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **security)
    try:
        await client.bootstrap()
        # The controller applies it; any broker forwards it there.
        reply = await client.send(client.get_random_node(), AlterUserScramCredentials(users))
        _check("AlterUserScramCredentials", ",".join(users), [(r[1], r[2]) for r in reply.results])
    finally:
        await client.close()
