"""The secure profile of the bundled Kafka: SASL_SSL (TLS + SCRAM-SHA-512) and ACLs (KRaft).

Runs beside the open broker, on its own ports (``AIF_KAFKA_SECURE_PORT`` [9094],
``AIF_KAFKA_SECURE_CONTROLLER_PORT`` [9095]) and data (``build/infra/kafka-secure``).
Every listener is SASL_SSL: a client must trust the broker's certificate, issued at first
start by a development CA made with the ``cryptography`` package (``tls/ca.pem``; the
broker reads PEM files, ``ssl.keystore.type=PEM``), and must log in with SCRAM. A
PLAINTEXT or plain-SASL client on these ports fails the TLS handshake.

At first start it writes one random password per principal (admin, the seven services) to
``credentials.json`` (0600) and creates their SCRAM credentials when formatting the
storage (``kafka-storage format --add-scram``), so they exist before the broker takes its
first connection. Once it is up, admin creates every topic of the loop (auto-creation is
off), a producer principal per use case (``producer.<use_case>``, SCRAM user made at run
time: :func:`aif.infra.kafka_admin.upsert_scram_users`, its password added to
``credentials.json``) and the ACLs of :mod:`libs.auth.kafka_acls`, all idempotent, for the
use cases named in ``AIF_KAFKA_SECURE_USE_CASES`` (comma-separated; default: the shipped
specs in ``deploy/usecases``) or given to :func:`ensure_kafka_secure`, together with every
active use case of the broker's live catalogue (``aif.usecases``, which the registry
publishes on ``ApplyUseCase``). A use case applied at run time gets its producer and ACLs
when admin syncs again: ``python -m aif.infra kafka-acls`` once, or
``python -m aif.infra kafka-acls --follow`` beside the registry (it follows the catalogue
and syncs on each change; a retired use case's producer loses its ACLs).

ACLs are kept equal to the table: what it no longer grants is deleted, since ACLs live in
the broker's metadata and outlast the code that made them.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._component import Handle
from ._proc import InfraError, NotReady, file_lock, port_open, run_async
from .config import DEPLOY_DIR, InfraConfig
from .kafka import WARMUP_TOPIC, Kafka, _quiet_aiokafka, metadata_ready, warm_up
from .kafka_admin import broker_acls, create_topics, sync_acls, upsert_scram_users

SECURE_TEMPLATE = DEPLOY_DIR / "kafka" / "server-secure.properties"
MECHANISM = "SCRAM-SHA-512"

__all__ = [
    "KafkaSecure",
    "KafkaSecureHandle",
    "broker_acls",
    "create_topics",
    "ensure_kafka_secure",
    "sync_acls",
    "use_cases_from_env",
]


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

    def __init__(
        self,
        config: InfraConfig,
        use_cases: Iterable[str] | None = None,
        *,
        plaintext_port: int | None = None,
    ) -> None:
        super().__init__(config)
        self.use_cases = list(use_cases) if use_cases is not None else use_cases_from_env()
        # A PLAINTEXT listener beside SASL_SSL on the same broker, for measuring what TLS and
        # SCRAM cost (tests/bench/sasl.py) only. Its clients are User:ANONYMOUS, whom no ACL
        # of the table names: deny by default refuses them everything unless granted.
        self.plaintext_port = plaintext_port

    def ensure(self, timeout: float | None = None) -> bool:
        """Starts or reuses the broker, then creates its topics, producers and ACLs (idempotent)."""
        started = super().ensure(timeout)
        self.setup(self.use_cases, with_catalogue=True)
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

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    @property
    def ca_file(self) -> Path:
        """The development CA that signed the broker's certificate: what clients trust."""
        return self.tls_dir / "ca.pem"

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

    def _ensure_tls(self) -> Path:
        """The dev CA and the broker's certificate (kept once made); returns the broker's
        PEM key store: its private key, then its certificate and the CA's (the chain)."""
        from libs.auth.tls import create_ca, issue_cert

        keystore = self.tls_dir / "broker-keystore.pem"
        if keystore.exists() and self.ca_file.exists():
            return keystore
        ca = create_ca(self.tls_dir)
        hosts = dict.fromkeys([self.config.host, "localhost", "127.0.0.1"])
        broker = issue_cert(self.tls_dir, "kafka-broker", hosts=hosts, ca=ca)
        _write_private(keystore, broker.key.read_text() + broker.cert.read_text() + ca.cert.read_text())
        return keystore

    def _properties_values(self) -> dict[str, Any]:
        host = self.config.host
        extra = f",PLAINTEXT://{host}:{self.plaintext_port}" if self.plaintext_port else ""
        return {
            **super()._properties_values(),
            "ADMIN_PASSWORD": self._ensure_credentials()["admin"],
            "KEYSTORE": self._ensure_tls(),
            "TRUSTSTORE": self.ca_file,
            "EXTRA_LISTENERS": extra,
        }

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

    def ssl_context(self, cafile: Path | None = None) -> ssl.SSLContext:
        """A client TLS context that trusts ``cafile`` (default: the broker's CA) and checks
        the broker's name."""
        from aiokafka.helpers import create_ssl_context

        return create_ssl_context(cafile=str(cafile or self.ca_file))

    def client_security(self, principal: str = "admin") -> dict[str, Any]:
        """aiokafka keyword arguments to connect as ``principal``."""
        return {
            "security_protocol": "SASL_SSL",
            "ssl_context": self.ssl_context(),
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": principal,
            "sasl_plain_password": self.credentials()[principal],
        }

    def kafka_security(self, principal: str) -> Any:
        """``libs.bus.KafkaSecurity`` of ``principal`` (what a service's settings would give)."""
        from libs.bus import KafkaSecurity

        return KafkaSecurity(
            "SASL_SSL", MECHANISM, principal, self.credentials()[principal], ssl_cafile=str(self.ca_file)
        )

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

    async def catalogue_use_cases(self, timeout_s: float = 15.0) -> list[str]:
        """The active use cases of the broker's live catalogue (``aif.usecases``)."""
        from libs.bus import topics
        from libs.usecase.catalogue import Catalogue
        from libs.usecase.follower import CatalogueFollower

        follower = CatalogueFollower(
            self.endpoint(), Catalogue(), topic=topics.USECASES, security=self.kafka_security("admin")
        )
        try:
            await follower.load(timeout_s)
        finally:
            await follower.stop()
            await follower._consumer.stop()  # noqa: SLF001 - load() started it
        return follower.catalogue.names()

    def setup(self, use_cases: Iterable[str], *, with_catalogue: bool = False) -> list[str]:
        """Creates the loop's topics and each use case's producer, and sets every principal's
        ACLs to the table (idempotent); ``with_catalogue`` adds the live catalogue's use
        cases. Returns the use cases set up (the ACLs of any other are removed)."""
        return run_async(lambda: self.setup_async(use_cases, with_catalogue=with_catalogue))

    async def setup_async(self, use_cases: Iterable[str], *, with_catalogue: bool = False) -> list[str]:
        from libs.auth.kafka_acls import all_topics, bindings, is_managed, producer

        names = set(use_cases)
        if with_catalogue:
            names |= set(await self.catalogue_use_cases())
        chosen = sorted(names)
        admin = self.client_security()
        # One writer of credentials.json at a time (tests and tools may set up side by side).
        with file_lock(self.dir / ".setup.lock"):
            creds = self.credentials()
            new = {producer(uc): secrets.token_urlsafe(24) for uc in chosen if producer(uc) not in creds}
            if new:
                # Saved before the broker has them: a crash in between leaves a password
                # that the next setup does not make again, so upsert them every time.
                _write_private(self.credentials_file, json.dumps({**creds, **new}, indent=1))
            producers = {producer(uc): {**creds, **new}[producer(uc)] for uc in chosen}
            await upsert_scram_users(self.endpoint(), admin, producers)
            await create_topics(self.endpoint(), admin, all_topics(chosen))
            await self._align_topic_configs(all_topics(chosen))
            await sync_acls(self.endpoint(), admin, bindings(chosen), is_managed)
        self.use_cases = chosen
        return chosen

    async def _align_topic_configs(self, names: Iterable[str]) -> None:
        """Topics with settings of their own (``libs.bus.topics.CONFIGS``: the catalogue
        compacted, the audit checkpoints kept forever) get them even when an older setup
        created them without."""
        from libs.bus import topics
        from libs.bus.admin import ensure_topic

        for name in sorted(set(topics.CONFIGS) & set(names)):
            await ensure_topic(
                self.endpoint(),
                name,
                partitions=topics.PARTITIONS.get(name, 1),
                configs=topics.CONFIGS[name],
                security=self.kafka_security("admin"),
            )

    def add_principal(self, principal: str, acls: Iterable[Any]) -> None:
        """A SCRAM user outside the table (a client such as ``kafka_acls.OUTCOME_FEED``) with
        exactly ``acls`` (``kafka_acls.AclBinding`` of that principal); its password is made
        once and kept in ``credentials.json``. Idempotent."""
        run_async(lambda: self.add_principal_async(principal, acls))

    async def add_principal_async(self, principal: str, acls: Iterable[Any]) -> None:
        from libs.auth.kafka_acls import ADMIN, is_managed

        user = f"User:{principal}"
        wanted = list(acls)
        # The table's principals are set up by setup_async alone: two owners of one
        # principal's ACLs would delete each other's.
        if principal == ADMIN or is_managed(user):
            raise InfraError(self.name, f"{principal} is a principal of the ACL table")
        strangers = sorted({a.principal for a in wanted} - {user})
        if strangers:
            raise InfraError(self.name, f"ACLs for {strangers} given to add_principal({principal!r})")
        admin = self.client_security()
        with file_lock(self.dir / ".setup.lock"):
            creds = self.credentials()
            if principal not in creds:
                creds[principal] = secrets.token_urlsafe(24)
                _write_private(self.credentials_file, json.dumps(creds, indent=1))
            await upsert_scram_users(self.endpoint(), admin, {principal: creds[principal]})
            await sync_acls(self.endpoint(), admin, wanted, lambda p: p == user)

    async def follow_catalogue(self, stop: asyncio.Event) -> None:
        """Keeps the producers and ACLs equal to the live catalogue until ``stop`` is set:
        a use case applied at run time is set up on the change, a retired one loses its
        producer's ACLs."""
        from libs.bus import topics
        from libs.usecase.catalogue import Catalogue, Change
        from libs.usecase.follower import CatalogueFollower

        base = list(self.use_cases)
        catalogue = Catalogue()
        follower = CatalogueFollower(
            self.endpoint(), catalogue, topic=topics.USECASES, security=self.kafka_security("admin")
        )

        async def changed(_: Change) -> None:
            await self.setup_async([*base, *catalogue.names()])

        await follower.load()
        await self.setup_async([*base, *catalogue.names()])
        catalogue.listen(changed)
        runner = asyncio.create_task(follower.run())
        try:
            await stop.wait()
        finally:
            await follower.stop()
            await runner


@dataclass(kw_only=True)
class KafkaSecureHandle(Handle):
    """A reachable secure broker. ``security(principal)`` gives a client's keyword arguments."""

    bootstrap_servers: str
    use_cases: list[str] = field(default_factory=list)

    @property
    def secure(self) -> KafkaSecure:
        assert isinstance(self.component, KafkaSecure)
        return self.component

    @property
    def ca_file(self) -> Path:
        return self.secure.ca_file

    def security(self, principal: str) -> dict[str, Any]:
        return self.secure.client_security(principal)

    def add_use_case(self, use_case: str) -> None:
        """Creates the raw topic of a new use case, its producer and their ACLs."""
        if use_case not in self.use_cases:
            self.use_cases.append(use_case)
        # The whole list: setup makes the broker's ACLs equal to the table for these.
        self.use_cases = self.secure.setup(self.use_cases, with_catalogue=True)


def ensure_kafka_secure(
    config: InfraConfig | None = None, timeout: float | None = None, use_cases: Iterable[str] | None = None
) -> KafkaSecureHandle:
    """Reuses the secure broker on its port or starts one; then creates topics, producers and
    ACLs for ``use_cases`` and the live catalogue's."""
    comp = KafkaSecure(config or InfraConfig.from_env(), use_cases)
    started = comp.ensure(timeout)
    return KafkaSecureHandle(
        started=started,
        log_file=comp.daemon.log_file,
        component=comp,
        bootstrap_servers=comp.endpoint(),
        use_cases=list(comp.use_cases),
    )
