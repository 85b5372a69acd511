"""A gateway killed with SIGKILL loses no prediction it answered from the prediction log.

The gateway runs as a real process (``python -m services.gateway``) on the real broker and a
Triton of the gateway tests. Its log flushes only every minute, so the predictions it
answers are all still in its buffer when it is killed. The next process on the same port
publishes them: every prediction id answered is on the predictions topic, once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from aif import infra
from aif.stack.catalogue import new_topic as new_catalogue_topic
from aif.stack.catalogue import seed_catalogue
from aifactory.gateway.v1 import events_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from tests.gateway_support import shared_triton
from tests.integration.test_gateway import as_values, features
from tests.integration.test_monitor import read_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ANSWERED = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.gateway"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _answer(port: int, n: int, proc: subprocess.Popen[bytes], log: Path) -> list[str]:
    """``n`` predictions answered (waiting for the gateway to serve first)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = gw_grpc.GatewayServiceStub(channel)
        deadline = time.monotonic() + 120
        ids: list[str] = []
        while len(ids) < n:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                reply = await stub.Predict(
                    gw_pb.PredictRequest(use_case="loan_approval", features=as_values(features(len(ids)))),
                    timeout=5,
                )
            except grpc.aio.AioRpcError:
                assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
                await asyncio.sleep(0.5)
                continue
            ids.append(reply.prediction.prediction_id)
        return ids


async def test_predictions_answered_before_a_kill_are_published_by_the_next_process(
    kafka: infra.KafkaHandle, new_topic: Any, tmp_path: Path
) -> None:
    triton = shared_triton()
    topic = await new_topic("gw.kill.predictions")
    port = free_port()
    # The gateway alone (no registry) learns the shipped specs from a catalogue of its own.
    catalogue = new_catalogue_topic("gw-kill")
    await seed_catalogue(kafka.bootstrap_servers, catalogue)
    env = {
        **os.environ,
        "AIF_GATEWAY_USECASES_TOPIC": catalogue,
        "PYTHONUNBUFFERED": "1",
        "AIF_GATEWAY_AUTH_MODE": "off",
        "AIF_GATEWAY_GRPC_PORT": str(port),
        "AIF_GATEWAY_OIP_PORT": str(free_port()),
        "AIF_GATEWAY_METRICS_PORT": "0",
        "AIF_GATEWAY_TRITON_URL": triton.grpc_url,
        "AIF_GATEWAY_TRITON_CONTROL_KEY": triton.control_key,
        "AIF_GATEWAY_REGISTRY_TARGET": "",
        "AIF_GATEWAY_STATIC_ALIASES": "loan_approval:champion=1",
        "AIF_GATEWAY_USE_CASES": "loan_approval",
        "AIF_GATEWAY_FEATURESTORE_TARGET": "127.0.0.1:1",
        "AIF_GATEWAY_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        "AIF_GATEWAY_PREDICTIONS_TOPIC": topic,
        "AIF_GATEWAY_MODEL_PROMOTED_TOPIC": await new_topic("gw.kill.promoted"),
        "AIF_GATEWAY_PREDLOG_WAL_DIR": str(tmp_path / "predlog"),
        # Nothing is flushed before the kill: every answer is still in the buffer.
        "AIF_GATEWAY_PREDLOG_FLUSH_MS": "60000",
        "AIF_GATEWAY_PREDLOG_BATCH": "100000",
    }
    log = tmp_path / "gateway.log"
    first = _start(env, log)
    try:
        answered = await _answer(port, ANSWERED, first, log)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    assert await read_all(kafka.bootstrap_servers, topic, events_pb2.PredictionLogged, settle=0.5) == []

    second = _start({**env, "AIF_GATEWAY_PREDLOG_FLUSH_MS": "20"}, log)
    try:
        deadline = time.monotonic() + 60
        logged: list[Any] = []
        while len(logged) < ANSWERED and time.monotonic() < deadline:
            assert second.poll() is None, log.read_text(errors="replace")[-3000:]
            await asyncio.sleep(0.5)
            logged = await read_all(kafka.bootstrap_servers, topic, events_pb2.PredictionLogged, settle=0.3)
        ids = [event.prediction_id for _, event in logged]
        assert sorted(ids) == sorted(answered), f"{len(ids)} of {ANSWERED} logged"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert list((tmp_path / "predlog").glob("*.wal")) == []  # published, then forgotten
