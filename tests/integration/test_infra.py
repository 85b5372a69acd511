"""Proves each real component works: Kafka, PostgreSQL, Redis and Triton.

Fixtures reuse whatever already runs (``python -m aif.infra up``) and stop only what
they started themselves.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from aif.infra import (
    KafkaHandle,
    PostgresHandle,
    RedisHandle,
    TritonHandle,
    ensure_kafka,
    ensure_postgres,
    ensure_redis,
    ensure_triton,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaHandle]:
    handle = ensure_kafka()
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresHandle]:
    handle = ensure_postgres()
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisHandle]:
    handle = ensure_redis()
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def triton() -> Iterator[TritonHandle]:
    handle = ensure_triton()
    yield handle
    handle.stop()


def test_kafka_produce_consume(kafka: KafkaHandle) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"test-infra-{uuid.uuid4().hex[:8]}"
    payload = uuid.uuid4().bytes

    async def roundtrip() -> bytes:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=f"test-infra-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
        )
        await producer.start()
        await consumer.start()
        try:
            await producer.send_and_wait(topic, payload, key=b"k")
            msg = await asyncio.wait_for(consumer.getone(), timeout=30)
            return msg.value
        finally:
            await consumer.stop()
            await producer.stop()

    assert asyncio.run(roundtrip()) == payload


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
def test_kcat_lists_metadata(kafka: KafkaHandle) -> None:
    out = subprocess.run(
        ["kcat", "-b", kafka.bootstrap_servers, "-L", "-m", "10"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "1 brokers:" in out
    assert f"broker 1 at {kafka.bootstrap_servers}" in out


def test_postgres_select_1(postgres: PostgresHandle) -> None:
    import psycopg

    with psycopg.connect(postgres.dsn, connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("select current_user, current_database()").fetchone() == (
            "aifactory",
            "aifactory",
        )


def test_redis_set_get(redis_server: RedisHandle) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        key = f"test-infra:{uuid.uuid4().hex}"
        client.set(key, b"value", ex=60)
        assert client.get(key) == b"value"
    finally:
        client.close()


def test_triton_identity_model(triton: TritonHandle) -> None:
    import tritonclient.grpc as grpcclient

    before = sorted(triton.model_repository.rglob("*"))
    triton.load_model("identity_fp32")
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        assert client.is_model_ready("identity_fp32")
        assert sorted(triton.model_repository.rglob("*")) == before  # loaded through the API only
        data = np.arange(8, dtype=np.float32) * 1.5
        inp = grpcclient.InferInput("INPUT0", list(data.shape), "FP32")
        inp.set_data_from_numpy(data)
        result = client.infer("identity_fp32", [inp], outputs=[grpcclient.InferRequestedOutput("OUTPUT0")])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
    finally:
        client.unload_model("identity_fp32", headers=triton.control_headers)  # model control: the key
        client.close()


def test_triton_stop_and_restart(triton: TritonHandle) -> None:
    """Outage tests rely on stopping and starting Triton cleanly, ports freed between."""
    import tritonclient.grpc as grpcclient

    if not triton.managed:
        pytest.skip("Triton on this port was not started by aif.infra")
    triton.stop_server()
    assert not triton.is_running()
    triton.start_server()
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        assert client.is_server_ready()
    finally:
        client.close()
