"""The secure profile of the bundled Kafka: SASL/SCRAM-SHA-512 clients and ACLs (KRaft).

Runs beside the open broker, on its own ports (``AIF_KAFKA_SECURE_PORT`` [9094],
``AIF_KAFKA_SECURE_CONTROLLER_PORT`` [9095]) and data (``build/infra/kafka-secure``).
At first start it writes one random password per principal (admin, the seven
services, producer) to ``credentials.json`` (0600) and creates their SCRAM
credentials when formatting the storage (``kafka-storage format --add-scram``), so
they exist before the broker takes its first connection. Once it is up, admin
creates every topic of the loop (auto-creation is off) and the ACLs of
:mod:`libs.auth.kafka_acls`, both idempotent, for the use cases named in
``AIF_KAFKA_SECURE_USE_CASES`` (comma-separated; default: the shipped specs in
``deploy/usecases``) or given to :func:`ensure_kafka_secure`.

ACLs are kept equal to the table: what it no longer grants is deleted, since ACLs
live in the broker's metadata and outlast the code that made them. They are read
and written with Kafka's DescribeAcls/CreateAcls/DeleteAcls requests sent by
aiokafka's client (its admin client has no ACL method yet); a JVM start per
``kafka-acls`` invocation would cost about a minute on two cores.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._component import Handle
from ._proc import InfraError, NotReady, port_open, run_async
from .config import DEPLOY_DIR, InfraConfig
from .kafka import WARMUP_TOPIC, Kafka, _quiet_aiokafka, metadata_ready, warm_up

SECURE_TEMPLATE = DEPLOY_DIR / "kafka" / "server-secure.properties"
MECHANISM = "SCRAM-SHA-512"


def use_cases_from_env(env: dict[str, str] | None = None) -> list[str]:
    """``AIF_KAFKA_SECURE_USE_CASES`` (comma-separated), else the shipped use-case specs."""
    raw = (os.environ if env is None else env).get("AIF_KAFKA_SECURE_USE_CASES", "")
    named = [u.strip() for u in raw.split(",") if u.strip()]
    if named:
        return named
    from libs.usecase import load_default

    return sorted(load_default())


def _write_private(path: Path, text: str) -> None:
    """Writes a file readable by its owner only, from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


class KafkaSecure(Kafka):
    name = "kafka-secure"
    template = SECURE_TEMPLATE

    def __init__(self, config: InfraConfig, use_cases: Iterable[str] | None = None) -> None:
        super().__init__(config)
        self.use_cases = list(use_cases) if use_cases is not None else use_cases_from_env()

    def ensure(self, timeout: float | None = None) -> bool:
        """Starts or reuses the broker, then creates its topics and ACLs (idempotent)."""
        started = super().ensure(timeout)
        self.setup(self.use_cases)
        return started

    @property
    def port(self) -> int:
        return self.config.kafka_secure_port

    @property
    def other_ports(self) -> list[int]:
        return [self.config.kafka_secure_controller_port]

    @property
    def credentials_file(self) -> Path:
        return self.dir / "credentials.json"

    def credentials(self) -> dict[str, str]:
        """Principal → password (created with the storage; admin reads them from here)."""
        try:
            return dict(json.loads(self.credentials_file.read_text()))
        except FileNotFoundError:
            raise InfraError(
                self.name,
                f"no {self.credentials_file}: start the secure broker first "
                "(python -m aif.infra up kafka-secure)",
            ) from None

    def _ensure_credentials(self) -> dict[str, str]:
        from libs.auth.kafka_acls import PRINCIPALS

        if self.credentials_file.exists():
            creds = self.credentials()
            missing = [p for p in PRINCIPALS if p not in creds]
            if missing:
                raise InfraError(
                    self.name,
                    f"{self.credentials_file} lacks {missing}; SCRAM users are "
                    f"made at format time: remove {self.dir} to start afresh",
                )
            return creds
        if (self.data_dir / "meta.properties").exists():
            raise InfraError(
                self.name,
                f"storage in {self.data_dir} exists but its credentials are "
                f"gone; remove {self.dir} to start afresh",
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        creds = {p: secrets.token_urlsafe(24) for p in PRINCIPALS}
        _write_private(self.credentials_file, json.dumps(creds, indent=1))
        return creds

    def _properties_values(self) -> dict[str, Any]:
        return {**super()._properties_values(), "ADMIN_PASSWORD": self._ensure_credentials()["admin"]}

    def _write_properties(self) -> Path:
        import string

        path = self.dir / "server.properties"
        _write_private(path, string.Template(self.template.read_text()).substitute(self._properties_values()))
        return path

    def _format_args(self) -> list[str]:
        args: list[str] = []
        for name, password in self._ensure_credentials().items():
            args += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
        return args

    def client_security(self, principal: str = "admin") -> dict[str, Any]:
        """aiokafka keyword arguments to connect as ``principal``."""
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": principal,
            "sasl_plain_password": self.credentials()[principal],
        }

    def probe(self) -> None:
        if not port_open(self.config.host, self.port):
            raise NotReady(f"nothing listens on {self.endpoint()} yet")
        _quiet_aiokafka()
        admin = self.client_security()

        async def ready() -> None:
            await metadata_ready(self.endpoint(), admin)
            # Auto-creation is off: the warm-up topic must exist before the warm-up.
            await create_topics(self.endpoint(), admin, [WARMUP_TOPIC])
            await warm_up(self.endpoint(), admin)

        run_async(ready)

    def setup(self, use_cases: Iterable[str]) -> None:
        """Creates the loop's topics and sets every principal's ACLs to the table (idempotent)."""
        from libs.auth.kafka_acls import ACCESS, all_topics, bindings

        use_cases = list(use_cases)
        admin = self.client_security()

        async def apply() -> None:
            await create_topics(self.endpoint(), admin, all_topics(use_cases))
            await sync_acls(self.endpoint(), admin, bindings(use_cases), ACCESS)

        run_async(apply)


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
            from libs.bus import topics

            # The catalogue's topic is compacted, with one partition (libs.bus.topics).
            reply = await admin.create_topics(
                [
                    NewTopic(
                        n, topics.PARTITIONS.get(n, partitions), 1, topic_configs=topics.CONFIGS.get(n, {})
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


# Kafka protocol wildcards (ResourceType/PatternType/AclOperation/AclPermissionType ANY).
_ANY = 1


async def sync_acls(
    bootstrap: str, security: dict[str, Any], wanted: Iterable[Any], principals: Iterable[str]
) -> tuple[int, int]:
    """Makes the broker's ACLs of ``principals`` exactly ``wanted``: creates what is missing,
    deletes what the table no longer grants (ACLs outlive the code that made them).
    Returns (created, deleted).
    """
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest

    from libs.auth.kafka_acls import ALLOW

    managed = {f"User:{p}" for p in principals}
    want = {
        (a.principal, int(a.resource_type), a.resource, int(a.pattern), int(a.operation), a.host, ALLOW)
        for a in wanted
    }
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **security)
    try:
        await client.bootstrap()
        node = client.get_random_node()
        have = {acl for acl in await _describe_acls(client, node) if acl[0] in managed}
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


async def _describe_acls(client: Any, node: int) -> set[tuple[str, int, str, int, int, str, int]]:
    """Every ACL the broker holds, as (principal, type, name, pattern, operation, host, permission)."""
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


async def broker_acls(
    bootstrap: str, security: dict[str, Any]
) -> set[tuple[str, int, str, int, int, str, int]]:
    """What the broker enforces now (tests compare it with the table)."""
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **security)
    try:
        await client.bootstrap()
        return await _describe_acls(client, client.get_random_node())
    finally:
        await client.close()


@dataclass(kw_only=True)
class KafkaSecureHandle(Handle):
    """A reachable secure broker. ``security(principal)`` gives a client's keyword arguments."""

    bootstrap_servers: str
    use_cases: list[str] = field(default_factory=list)

    def security(self, principal: str) -> dict[str, Any]:
        assert isinstance(self.component, KafkaSecure)
        return self.component.client_security(principal)

    def add_use_case(self, use_case: str) -> None:
        """Creates the raw topic of a new use case and its producer/ingestion ACLs."""
        assert isinstance(self.component, KafkaSecure)
        if use_case not in self.use_cases:
            self.use_cases.append(use_case)
        self.component.use_cases = list(self.use_cases)
        # The whole list: setup makes the broker's ACLs equal to the table for these.
        self.component.setup(self.use_cases)


def ensure_kafka_secure(
    config: InfraConfig | None = None, timeout: float | None = None, use_cases: Iterable[str] | None = None
) -> KafkaSecureHandle:
    """Reuses the secure broker on its port or starts one; then creates topics and ACLs."""
    comp = KafkaSecure(config or InfraConfig.from_env(), use_cases)
    started = comp.ensure(timeout)
    return KafkaSecureHandle(
        started=started,
        log_file=comp.daemon.log_file,
        component=comp,
        bootstrap_servers=comp.endpoint(),
        use_cases=list(comp.use_cases),
    )
