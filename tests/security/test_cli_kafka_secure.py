"""``aif dlq`` and ``aif status`` on the secure broker: SASL_SSL (SCRAM) from the context.

An operator's context names the principal, a password file and the broker's CA; the
command connects as that principal, and a missing or wrong credential is one line saying
what to fix, never a hang or a silent fall back to PLAINTEXT.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from aif.cli.app import app
from aif.infra import KafkaSecureHandle
from libs.bus import headers as h
from libs.bus.topics import DEAD_LETTER

pytestmark = pytest.mark.integration


def aif(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"AIF_CONFIG": str(config), "AIF_CONTEXT": None})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


def context_file(tmp_path: Path, secure: KafkaSecureHandle, **context: str) -> Path:
    path = tmp_path / "config.yaml"
    base = {"kafka": secure.bootstrap_servers, "kafka-ca": str(secure.ca_file)}
    path.write_text(yaml.safe_dump({"current-context": "prod", "contexts": {"prod": base | context}}))
    return path


def password_file(tmp_path: Path, secret: str) -> str:
    path = tmp_path / "kafka.password"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return str(path)


async def dead_letter(secure: KafkaSecureHandle, use_case: str, reason: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=secure.bootstrap_servers, **secure.security("admin"))
    await producer.start()
    try:
        headers: list[tuple[str, bytes]] = [
            (h.USE_CASE, use_case.encode()),
            (h.DLQ_ERROR, b"InvalidEvent"),
            (h.DLQ_REASON, reason.encode()),
            (h.DLQ_SOURCE, b"aif.raw.loan_approval/0/7"),
        ]
        await producer.send_and_wait(DEAD_LETTER, b"not protobuf", headers=headers)
    finally:
        await producer.stop()


def test_dlq_list_reads_the_secure_broker_as_the_contexts_principal(
    kafka_secure: KafkaSecureHandle, tmp_path: Path
) -> None:
    use_case = f"cli_sasl_{uuid.uuid4().hex[:8]}"
    asyncio.run(dead_letter(kafka_secure, use_case, "a dead letter read over SASL_SSL"))
    secret = kafka_secure.secure.credentials()["admin"]
    config = context_file(
        tmp_path,
        kafka_secure,
        **{
            "kafka-security-protocol": "SASL_SSL",
            "kafka-username": "admin",
            "kafka-password-file": password_file(tmp_path, secret),
        },
    )

    code, output = aif(config, "dlq", "list", "-u", use_case, "--json")

    assert code == 0, output
    letters: list[dict[str, Any]] = json.loads(output)
    assert [letter["use_case"] for letter in letters] == [use_case]
    assert "a dead letter read over SASL_SSL" in letters[0]["reasons"][0]


@pytest.mark.parametrize(
    ("case", "context", "says"),
    [
        (
            "no credentials",
            {"kafka-security-protocol": "SASL_SSL"},
            "needs kafka-username and kafka-password-file",
        ),
        (
            "unreadable password file",
            {
                "kafka-security-protocol": "SASL_SSL",
                "kafka-username": "admin",
                "kafka-password-file": "/nonexistent/pw",
            },
            "cannot read the Kafka password file /nonexistent/pw",
        ),
        ("wrong password", {"kafka-security-protocol": "SASL_SSL", "kafka-username": "admin"}, "Kafka at"),
        ("PLAINTEXT on the secure port", {}, "Kafka at"),
    ],
)
def test_a_bad_kafka_credential_is_one_line_and_a_failure(
    kafka_secure: KafkaSecureHandle, tmp_path: Path, case: str, context: dict[str, str], says: str
) -> None:
    if case == "wrong password":
        context = context | {"kafka-password-file": password_file(tmp_path, "not-the-password")}
    config = context_file(tmp_path, kafka_secure, **context)

    code, output = aif(config, "dlq", "list")

    assert code != 0, (case, output)
    assert says in output, (case, output)
    assert len(output.strip().splitlines()) == 1, (case, output)
