"""A fresh factory on one machine: its own Kafka and Triton, the seven services, one state root.

Each run starts from nothing (a new broker, an empty model repository, empty
databases), so what the loop shows is what the factory did in that run alone.

With ``kafka_sasl=True`` the broker is the secure profile (:mod:`aif.infra.kafka_secure`:
SASL_SSL, SCRAM-SHA-512, ACLs, deny by default) on the factory's ports: each service logs
in as its own principal (``User:<service>``, the ACLs of :mod:`libs.auth.kafka_acls`:
its groups, the topics it reads and writes, its transactional ids), with a password made
for this run's broker and given to that service's environment alone
(``AIF_<SERVICE>_KAFKA_PASSWORD``: the stack gives no service another's ``AIF_<NAME>_*``),
and no service is allowed PLAINTEXT. The loop driver's clients log in as the use case's
business producer (``producer.<use_case>``, its raw topic only) and as the outcome feed
(``kafka_acls.OUTCOME_FEED``, the feedback topic only): :meth:`Factory.loop_kafka`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aif import infra
from aif.infra.kafka_secure import MECHANISM
from aif.loop.driver import LoopKafka
from aif.stack import SERVICES, Stack, tls_from_env
from libs.auth.kafka_acls import OUTCOME_FEED, outcome_feed_bindings, producer
from libs.bus import KafkaSecurity


@dataclass
class Factory:
    root: Path
    kafka: infra.KafkaHandle | infra.KafkaSecureHandle
    triton: infra.TritonHandle
    stack: Stack

    def targets(self) -> dict[str, str]:
        return {name: self.stack.target(name) for name in SERVICES}

    @property
    def secure_kafka(self) -> infra.KafkaSecureHandle | None:
        """The SASL_SSL broker when the factory runs on one (``kafka_sasl``), else None."""
        return self.kafka if isinstance(self.kafka, infra.KafkaSecureHandle) else None

    def kafka_security(self, principal: str) -> KafkaSecurity | None:
        """How ``principal`` logs in to this factory's broker (None: the open broker)."""
        secure = self.secure_kafka
        return None if secure is None else secure.secure.kafka_security(principal)

    def loop_kafka(self, use_case: str) -> LoopKafka | None:
        """The loop driver's logins on a secure broker: the use case's business producer
        for its records, the outcome feed for past outcomes; None on the open broker."""
        secure = self.secure_kafka
        if secure is None:
            return None
        if use_case not in secure.use_cases:
            secure.add_use_case(use_case)
        return LoopKafka(
            records=secure.secure.kafka_security(producer(use_case)),
            outcomes=secure.secure.kafka_security(OUTCOME_FEED),
        )


def _sasl_env(secure: infra.KafkaSecureHandle) -> dict[str, str]:
    """The services' settings for the secure broker: SASL_SSL and its CA for all, and each
    service's own login under its own prefix (which only that service is given)."""
    env = {
        "AIF_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AIF_KAFKA_SASL_MECHANISM": MECHANISM,
        "AIF_KAFKA_SSL_CAFILE": str(secure.ca_file),
    }
    credentials = secure.secure.credentials()
    for name in SERVICES:
        prefix = f"AIF_{name.upper()}_"
        env[prefix + "KAFKA_USERNAME"] = name
        env[prefix + "KAFKA_PASSWORD"] = credentials[name]
    return env


@contextlib.contextmanager
def fresh_factory(
    root: Path,
    *,
    kafka_port: int,
    triton_port: int,
    service_offset: int,
    say: Callable[[str], None] = print,
    env: dict[str, str] | None = None,
    tls: bool | None = None,
    kafka_sasl: bool = False,
    restart_exited: bool = False,
) -> Iterator[Factory]:
    """Kafka on ``kafka_port`` (+1 controller), Triton on ``triton_port`` (HTTP; +1 gRPC, +2
    metrics), the services on their default ports + ``service_offset``; everything started
    here is stopped on exit, whatever happened. ``tls``: mutual TLS between every caller and
    service (None: as ``AIF_STACK_TLS`` says), certificates under ``<root>/pki``.
    ``kafka_sasl``: the secure broker (SASL_SSL, a principal and ACLs per service) on
    ``kafka_port`` instead of the open one (see the module docstring). ``restart_exited``:
    a service that exits on its own is started again, as its supervisor would in a
    deployment (:meth:`Stack.start_restarter`)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    default = infra.InfraConfig.from_env()
    config = dataclasses.replace(
        default,
        infra_dir=root / "infra",
        tools_dir=default.tools_dir or default.infra_dir,
        kafka_port=kafka_port,
        kafka_controller_port=kafka_port + 1,
        kafka_secure_port=kafka_port,
        kafka_secure_controller_port=kafka_port + 1,
        triton_http_port=triton_port,
        triton_grpc_port=triton_port + 1,
        triton_metrics_port=triton_port + 2,
        triton_model_repo=root / "model_repository",
    )
    handles: list[infra.Handle] = []
    stack: Stack | None = None
    try:
        started = time.monotonic()
        kafka: infra.KafkaHandle | infra.KafkaSecureHandle
        sasl_env: dict[str, str] = {}
        if kafka_sasl:
            from libs.usecase import load_default

            # Topics, producers and ACLs for the shipped specs, which the stack applies below.
            kafka = infra.ensure_kafka_secure(config, use_cases=sorted(load_default()))
            handles.append(kafka)
            kafka.secure.add_principal(OUTCOME_FEED, outcome_feed_bindings())
            sasl_env = _sasl_env(kafka)
        else:
            kafka = infra.ensure_kafka(config)
            handles.append(kafka)
        say(
            f"    kafka   {kafka.bootstrap_servers} ready in {time.monotonic() - started:.1f}s"
            + (" (SASL_SSL, a principal and ACLs per service)" if kafka_sasl else "")
        )
        started = time.monotonic()
        triton = infra.ensure_triton(config)
        handles.append(triton)
        say(
            f"    triton  {triton.grpc_url} ready in {time.monotonic() - started:.1f}s "
            "(explicit model control: the gateway loads models through its API)"
        )
        stack = Stack(
            root / "logs",
            port_offset=service_offset,
            data_root=root / "state",
            env={
                "AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
                "AIF_GATEWAY_TRITON_URL": triton.grpc_url,
                # The gateway's alone (the stack gives AIF_GATEWAY_* to the gateway only).
                "AIF_GATEWAY_TRITON_CONTROL_KEY": triton.control_key,
                # The registry signs its audit head every 5 s to this broker's checkpoint
                # topic (its own: a fresh broker), with a key beside, not in, its database.
                "AIF_REGISTRY_AUDIT_CHECKPOINT_SECONDS": "5",
                "AIF_REGISTRY_AUDIT_CHECKPOINT_KEY": str(root / "state" / "registry-keys" / "checkpoint.key"),
                **sasl_env,
                **(env or {}),
            },
            tls=tls_from_env() if tls is None else tls,
            pki_dir=root / "pki",
        )
        started = time.monotonic()
        stack.start(timeout=120)
        say(
            f"    {len(SERVICES)} services SERVING in {time.monotonic() - started:.1f}s, each its own process "
            f"(logs in {root / 'logs'})"
        )
        # The factory starts with no use case: the shipped specs are onboarded as a user's
        # would be (aif usecase apply: the registry's catalogue, followed by every service).
        started = time.monotonic()
        names = stack.apply_usecases(reason="fresh factory: the shipped specs")
        say(
            f"    use cases {', '.join(names)} applied (aif usecase apply) and taken up by every "
            f"service in {time.monotonic() - started:.1f}s"
        )
        if restart_exited:
            stack.start_restarter(say)
        try:
            yield Factory(root, kafka, triton, stack)
        except BaseException:
            say(f"    the run failed; what the services logged above INFO:\n{stack.troubles()}")
            raise
    finally:
        if stack is not None:
            stack.stop()
        for handle in reversed(handles):
            handle.stop()
