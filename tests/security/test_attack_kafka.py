"""Attacks on the secure Kafka profile (SASL_SSL: TLS + SCRAM, ACLs), run on the real broker.

One team's producer writing another team's raw topic, any producer writing a lifecycle topic,
a client without TLS (or without SASL) on the secure port, a client that does not trust the
broker's CA, a producer of a use case applied at run time reaching beyond its raw topic, and
a service pointed at a PLAINTEXT broker without the local-development flag: each is refused.
Every attempt is counted with :func:`tests.security.conftest.attack`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from aif.infra import KafkaSecureHandle
from aifactory.registry.v1 import events_pb2 as registry_events
from libs.auth.kafka_acls import producer
from libs.bus import topics
from tests.security.conftest import attack
from tests.security.kafka_support import RUNTIME, catalogue_entry, publish_as_registry, write

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
TEAM_A, TEAM_B = "loan_approval", "image_segments"
# Topics that move a model's lifecycle: no producer may write any of them.
LIFECYCLE = [
    topics.TRAINING_REQUESTED,
    topics.MODEL_TRAINED,
    topics.MODEL_EVALUATED,
    topics.MODEL_PROMOTED,
    topics.ROLLBACK_REQUESTED,
    topics.DRIFT_DETECTED,
    topics.USECASES,
]


@pytest.fixture
def secure(kafka_secure: KafkaSecureHandle) -> KafkaSecureHandle:
    assert {TEAM_A, TEAM_B} <= set(kafka_secure.use_cases)
    return kafka_secure


async def _connects(bootstrap: str, security: dict[str, Any]) -> bool:
    """True when a client gets the cluster's metadata (it connected and, with SASL, logged in)."""
    client = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=4000, **security)
    try:
        await asyncio.wait_for(client.start(), 15)
        return True
    except (KafkaError, OSError, ssl.SSLError, TimeoutError):
        return False
    finally:
        await client.stop()


async def test_a_teams_producer_cannot_write_another_teams_raw_topic(secure: KafkaSecureHandle) -> None:
    # Control: each team's producer writes its own raw topic.
    assert await write(secure.bootstrap_servers, secure.security(producer(TEAM_A)), topics.raw(TEAM_A))
    assert await write(secure.bootstrap_servers, secure.security(producer(TEAM_B)), topics.raw(TEAM_B))
    for team, other in ((TEAM_A, TEAM_B), (TEAM_B, TEAM_A)):
        wrote = await write(secure.bootstrap_servers, secure.security(producer(team)), topics.raw(other))
        attack(succeeded=wrote)
        assert not wrote, f"{producer(team)} wrote {topics.raw(other)}"


async def test_no_producer_writes_a_lifecycle_topic(secure: KafkaSecureHandle) -> None:
    for team in (TEAM_A, TEAM_B):
        security = secure.security(producer(team))
        for topic in LIFECYCLE:
            wrote = await write(secure.bootstrap_servers, security, topic)
            attack(succeeded=wrote)
            assert not wrote, f"{producer(team)} wrote {topic}"


async def test_clients_without_tls_or_sasl_are_refused_on_the_secure_port(secure: KafkaSecureHandle) -> None:
    creds = secure.security(producer(TEAM_A))
    # Control: the same credentials over TLS get in.
    assert await _connects(secure.bootstrap_servers, creds)
    sasl_plaintext = {k: v for k, v in creds.items() if k != "ssl_context"} | {
        "security_protocol": "SASL_PLAINTEXT"
    }
    tls_only = {"security_protocol": "SSL", "ssl_context": creds["ssl_context"]}
    # PLAINTEXT; SASL with valid credentials but no TLS; TLS trusting the CA but no login.
    for security in ({}, sasl_plaintext, tls_only):
        got_in = await _connects(secure.bootstrap_servers, security)
        attack(succeeded=got_in)
        assert not got_in, f"{security.get('security_protocol', 'PLAINTEXT')} got in on the secure port"


async def test_a_client_that_does_not_trust_the_brokers_ca_is_refused(
    secure: KafkaSecureHandle, tmp_path: Path
) -> None:
    from libs.auth.tls import create_ca

    creds = secure.security(producer(TEAM_A))
    assert await _connects(secure.bootstrap_servers, creds)
    other_ca = create_ca(tmp_path / "other-ca").cert
    for context in (
        secure.secure.ssl_context(other_ca),  # another CA (a man in the middle's, say)
        ssl.create_default_context(),  # the system's public CAs
    ):
        got_in = await _connects(secure.bootstrap_servers, {**creds, "ssl_context": context})
        attack(succeeded=got_in)
        assert not got_in, "a client that does not trust the broker's CA connected"


async def test_a_use_case_applied_at_run_time_gets_a_producer_confined_to_its_raw_topic(
    secure: KafkaSecureHandle,
) -> None:
    await publish_as_registry(secure, catalogue_entry(registry_events.USE_CASE_STATE_ACTIVE))
    # The admin step that follows the catalogue (python -m aif.infra kafka-acls [--follow]).
    known = await secure.secure.setup_async([TEAM_A, TEAM_B], with_catalogue=True)
    assert RUNTIME in known
    runtime = secure.security(producer(RUNTIME))
    assert await write(secure.bootstrap_servers, runtime, topics.raw(RUNTIME))
    attempts = [
        (runtime, topics.raw(TEAM_A)),
        (runtime, topics.MODEL_PROMOTED),
        (secure.security(producer(TEAM_A)), topics.raw(RUNTIME)),
    ]
    for security, topic in attempts:
        wrote = await write(secure.bootstrap_servers, security, topic)
        attack(succeeded=wrote)
        assert not wrote, f"{security['sasl_plain_username']} wrote {topic}"
    # Retired: its producer loses its ACL at the next sync.
    await publish_as_registry(secure, catalogue_entry(registry_events.USE_CASE_STATE_RETIRED))
    assert RUNTIME not in await secure.secure.setup_async([TEAM_A, TEAM_B], with_catalogue=True)
    wrote = await write(secure.bootstrap_servers, runtime, topics.raw(RUNTIME))
    attack(succeeded=wrote)
    assert not wrote, "a retired use case's producer still writes its raw topic"


def test_a_service_refuses_a_plaintext_broker_without_the_local_development_flag() -> None:
    env = {k: v for k, v in os.environ.items() if k != "AIF_KAFKA_ALLOW_PLAINTEXT"}
    env |= {"AIF_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "AIF_AUTH_MODE": "off", "AIF_EVALUATOR_GRPC_PORT": "0"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "services.evaluator"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=45,
        )
        started = proc.returncode != 2
        err = proc.stderr
    except subprocess.TimeoutExpired:  # it ran: it took the PLAINTEXT broker
        started, err = True, ""
    attack(succeeded=started)
    assert not started
    assert "AIF_KAFKA_ALLOW_PLAINTEXT=1" in err and len(err.strip().splitlines()) == 1, err
    # The flag makes it local development: the same check passes.
    from libs.bus.security import require_kafka_tls
    from libs.settings import load_settings
    from services.evaluator.settings import EvaluatorSettings

    require_kafka_tls(load_settings(EvaluatorSettings, {**env, "AIF_KAFKA_ALLOW_PLAINTEXT": "1"}))
