"""A gateway killed with SIGKILL neither loses nor doubles a prediction of its log.

The gateway runs as a real process (``python -m services.gateway``) on the real broker and a
Triton of the gateway tests. Its log flushes only every minute, or once ``BATCH`` rows
wait. The first test kills it with every answer still in its buffer; the second with one
answered batch on Kafka and the next still buffered, both in one write-ahead segment. The
next process on the same port publishes what is missing: every prediction id answered is
on the predictions topic, once. A third test asks the real topic which events it holds,
as the log does before it sends again a publish whose outcome it does not know.
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
import numpy as np
import pytest

from aif import infra
from aif.stack.catalogue import new_topic as new_catalogue_topic
from aif.stack.catalogue import seed_catalogue
from aifactory.gateway.v1 import events_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from libs.usecase import load_default
from services.gateway.inputs import InputSchema
from services.gateway.predlog import BulkPublisher, PredictionLog, Served
from tests.gateway_support import shared_triton
from tests.integration.test_gateway import as_values, features
from tests.integration.test_monitor import read_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
LOAN = load_default()["loan_approval"]

ANSWERED = 40
BATCH = 10


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


async def _answer_batch(port: int, rows: int, seed: int) -> list[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await gw_grpc.GatewayServiceStub(channel).PredictBatch(
            gw_pb.PredictBatchRequest(
                use_case="loan_approval",
                inputs=[gw_pb.PredictionInput(features=as_values(features(seed + i))) for i in range(rows)],
            ),
            timeout=10,
        )
    return [p.prediction_id for p in reply.predictions]


async def _env(kafka: infra.KafkaHandle, new_topic: Any, tmp_path: Path, name: str) -> dict[str, str]:
    triton = shared_triton()
    topic = await new_topic(f"gw.{name}.predictions")
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
        "AIF_GATEWAY_MODEL_PROMOTED_TOPIC": await new_topic(f"gw.{name}.promoted"),
        "AIF_GATEWAY_PREDLOG_WAL_DIR": str(tmp_path / "predlog"),
        # A flush only once BATCH rows wait (or after a minute).
        "AIF_GATEWAY_PREDLOG_FLUSH_MS": "60000",
        "AIF_GATEWAY_PREDLOG_BATCH": str(BATCH),
    }
    return env


async def _logged(bootstrap: str, topic: str, settle: float = 0.3) -> list[str]:
    events = await read_all(bootstrap, topic, events_pb2.PredictionLogged, settle=settle)
    return [event.prediction_id for _, event in events]


async def _restart_and_check(
    kafka: infra.KafkaHandle, env: dict[str, str], log: Path, tmp_path: Path, answered: list[str]
) -> None:
    """The next process publishes what is missing: each answered id on the topic, once."""
    topic = env["AIF_GATEWAY_PREDICTIONS_TOPIC"]
    second = _start({**env, "AIF_GATEWAY_PREDLOG_FLUSH_MS": "20"}, log)
    try:
        deadline = time.monotonic() + 60
        ids: list[str] = []
        while len(ids) < len(answered) and time.monotonic() < deadline:
            assert second.poll() is None, log.read_text(errors="replace")[-3000:]
            await asyncio.sleep(0.5)
            ids = await _logged(kafka.bootstrap_servers, topic)
        await asyncio.sleep(1.0)  # a copy sent after the last one counted would show now
        ids = await _logged(kafka.bootstrap_servers, topic)
        assert sorted(ids) == sorted(answered), (
            f"{len(ids)} logged, {len(set(ids))} distinct, of {len(answered)}"
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert list((tmp_path / "predlog").glob("*.wal")) == []  # published, then forgotten


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


async def test_predictions_answered_before_a_kill_are_published_by_the_next_process(
    kafka: infra.KafkaHandle, new_topic: Any, tmp_path: Path
) -> None:
    env = await _env(kafka, new_topic, tmp_path, "kill")
    env["AIF_GATEWAY_PREDLOG_BATCH"] = "100000"  # nothing flushed: every answer stays buffered
    port, log = int(env["AIF_GATEWAY_GRPC_PORT"]), tmp_path / "gateway.log"
    first = _start(env, log)
    try:
        answered = await _answer(port, ANSWERED, first, log)
    finally:
        _kill(first)
    assert await _logged(kafka.bootstrap_servers, env["AIF_GATEWAY_PREDICTIONS_TOPIC"], settle=0.5) == []
    await _restart_and_check(kafka, env, log, tmp_path, answered)


async def test_what_was_published_before_a_kill_is_not_published_again(
    kafka: infra.KafkaHandle, new_topic: Any, tmp_path: Path
) -> None:
    env = await _env(kafka, new_topic, tmp_path, "kill-mixed")
    port, log = int(env["AIF_GATEWAY_GRPC_PORT"]), tmp_path / "gateway.log"
    topic = env["AIF_GATEWAY_PREDICTIONS_TOPIC"]
    first = _start(env, log)
    try:
        single = await _answer(port, 1, first, log)  # once it serves (the model is loaded)
        # Entries of 1, 6 and 6 rows: 13 waiting ≥ BATCH start a flush, which takes the
        # first two only (a flush holds at most BATCH rows); the third stays buffered, in
        # the same segment as the two published.
        a = await _answer_batch(port, 6, 100)
        b = await _answer_batch(port, 6, 200)
        deadline = time.monotonic() + 30
        while len(await _logged(kafka.bootstrap_servers, topic)) < 7 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        _kill(first)
    assert sorted(await _logged(kafka.bootstrap_servers, topic, settle=0.5)) == sorted(single + a)
    await _restart_and_check(kafka, env, log, tmp_path, single + a + b)


async def test_the_log_finds_which_events_the_topic_already_holds(
    kafka: infra.KafkaHandle, new_topic: Any
) -> None:
    topic = await new_topic("gw.logged-among")
    bulk = BulkPublisher(kafka.bootstrap_servers, "gateway")
    await bulk.start()
    try:
        before = int(time.time() * 1000)
        log = PredictionLog(bulk, topic, {LOAN.name: LOAN}, {LOAN.name: InputSchema(LOAN)}, salt="s")
        encoder = log._encoders[LOAN.name]
        served = Served(
            LOAN.name,
            LOAN.name,
            1,
            "champion",
            ["a", "b", "c"],
            ["", "", ""],
            np.zeros((3, InputSchema(LOAN).width), dtype=np.float32),
            np.zeros((3, 2), dtype=np.float32),
            10,
        )
        await bulk.publish(topic, encoder.records([served], log._headers)[:2])  # a and b, not c
        assert await bulk.logged_among(topic, {b"a", b"c", b"x"}, before - 1000) == {b"a"}
        # Records stamped before ``since_ms`` are not read.
        assert await bulk.logged_among(topic, {b"a", b"b"}, int(time.time() * 1000) + 60_000) == set()
    finally:
        await bulk.stop()
