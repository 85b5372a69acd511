"""The Python client (clients/python, ``aifactory-client``) against a real gateway: typed
answers, batches, feedback, tokens, deadlines and retries while the gateway is away; and
the package installs from its folder into a fresh virtualenv and works from there."""

# The gateway fixtures are shared with test_gateway_http (imported by name, as pytest finds them).
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import venv
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from aifactory.gateway.v1 import events_pb2
from tests.gateway_support import RunningGateway, gateway_settings, start_gateway
from tests.integration.test_gateway import features, read_events
from tests.integration.test_gateway_http import control, feature_store, ready, topics, triton  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "clients" / "python"
sys.path.insert(0, str(CLIENT))  # the package's source, as `pip install -e clients/python` would give

from aifactory_client import (  # noqa: E402
    NO_RETRY,
    AsyncGatewayClient,
    GatewayClient,
    GatewayError,
    PredictionInput,
    RetryPolicy,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
async def gateway(triton, kafka, topics, feature_store) -> AsyncIterator[RunningGateway]:  # type: ignore[no-untyped-def]
    settings = gateway_settings(
        triton.grpc_url,
        kafka.bootstrap_servers,
        static_aliases="loan_approval:champion=1",
        featurestore_target=feature_store[0],
        **topics,
        **control(triton),
    )
    gw = await start_gateway(settings)
    try:
        yield await ready(gw)
    finally:
        await gw.stop()


async def test_client_predicts_batches_and_records_feedback(gateway: RunningGateway, kafka, topics) -> None:  # type: ignore[no-untyped-def]
    def blocking() -> dict[str, object]:
        with GatewayClient(gateway.grpc_url, timeout_s=10) as gw:
            inline = gw.predict("loan_approval", features=features(7))
            by_id = gw.predict("loan_approval", entity_id="a7")
            batch = gw.predict_batch(
                "loan_approval",
                [PredictionInput(entity_id="a1"), {"features": {**features(2), "salary": "lots"}}],
            )
            fid = gw.record_feedback("loan_approval", by_id.prediction_id, 1)
            try:
                gw.predict("nope", entity_id="a1")
                unknown = None
            except GatewayError as exc:
                unknown = exc
            return {"inline": inline, "by_id": by_id, "batch": batch, "fid": fid, "unknown": unknown}

    out = await asyncio.to_thread(blocking)
    inline, by_id = out["inline"], out["by_id"]
    assert (
        inline.model_version == 1 and inline.use_case == "loan_approval" and len(inline.prediction_id) == 32
    )  # type: ignore[attr-defined]
    assert isinstance(inline.output, float) and 0.0 <= inline.output <= 1.0  # type: ignore[attr-defined]
    assert set(inline.outputs) == {"p_0", "p_1", "label"}  # type: ignore[attr-defined]
    assert by_id.entity_id == "a7" and by_id.output == pytest.approx(inline.output, rel=1e-5)  # type: ignore[attr-defined]
    first, bad = out["batch"]  # type: ignore[misc]
    assert first.ok and first.entity_id == "a1"
    assert not bad.ok and "inputs[1].features.salary" in bad.error and bad.output is None
    unknown = out["unknown"]
    assert (
        isinstance(unknown, GatewayError)
        and unknown.code is grpc.StatusCode.NOT_FOUND
        and unknown.attempts == 1
    )
    # The client gave the feedback its id, so a retried call is recorded once.
    ((event, headers),) = await read_events(
        kafka.bootstrap_servers, topics["feedback_topic"], events_pb2.FeedbackRecorded, 1
    )
    assert event.prediction_id == by_id.prediction_id and event.feedback_id == out["fid"]  # type: ignore[attr-defined]
    assert event.outcome.int64_value == 1

    async with AsyncGatewayClient(gateway.grpc_url) as agw:
        again = await agw.predict("loan_approval", entity_id="a7")
        assert again.output == pytest.approx(by_id.output, rel=1e-6)  # type: ignore[attr-defined]
        (only,) = await agw.predict_batch("loan_approval", [{"entity_id": "a3"}])
        assert only.ok and only.entity_id == "a3"


async def test_client_retries_unavailable_within_its_deadline(triton, kafka, topics, feature_store) -> None:  # type: ignore[no-untyped-def]
    """A gateway that starts a moment after the app's call: the call waits it out with
    backoff (UNAVAILABLE is retried); without retries or past the deadline it fails."""
    import socket

    with socket.socket() as s:  # a port nobody listens on yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = f"127.0.0.1:{port}"

    async with AsyncGatewayClient(target, retry=NO_RETRY, timeout_s=2) as no_retry:
        with pytest.raises(GatewayError) as err:
            await no_retry.predict("loan_approval", entity_id="a1")
    assert err.value.code is grpc.StatusCode.UNAVAILABLE and err.value.attempts == 1

    started = time.monotonic()
    async with AsyncGatewayClient(target, retry=RetryPolicy(attempts=50), timeout_s=1.0) as short:
        with pytest.raises(GatewayError) as err:
            await short.predict("loan_approval", entity_id="a1")
    # The deadline bounds the whole call, retries included.
    assert time.monotonic() - started < 2.5 and err.value.attempts > 1

    settings = gateway_settings(
        triton.grpc_url,
        kafka.bootstrap_servers,
        grpc_port=port,
        static_aliases="loan_approval:champion=1",
        featurestore_target=feature_store[0],
        **topics,
        **control(triton),
    )
    patient = AsyncGatewayClient(target, retry=RetryPolicy(attempts=200, max_backoff_s=0.5), timeout_s=120)
    call = asyncio.get_running_loop().create_task(patient.predict("loan_approval", entity_id="a2"))
    await asyncio.sleep(1.0)
    assert not call.done()  # still retrying: nobody listens yet
    gw = await start_gateway(settings)
    try:
        await ready(gw)
        answer = await asyncio.wait_for(call, 60)
        assert answer.entity_id == "a2" and answer.model_version == 1
    finally:
        await patient.close()
        await gw.stop()


async def test_client_sends_the_bearer_token(triton, kafka, topics, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from libs.auth import DevAuth

    auth = DevAuth(tmp_path / "auth").ensure()
    settings = gateway_settings(
        triton.grpc_url,
        kafka.bootstrap_servers,
        static_aliases="loan_approval:champion=1",
        auth_mode="jwt",
        auth_dir=auth.directory,
        **topics,
        **control(triton),
    )
    gw = await ready(await start_gateway(settings))
    try:
        token = auth.issue("shop", {"loan_approval": ["app"]})
        async with AsyncGatewayClient(gw.grpc_url, token=token) as app:
            assert (await app.predict("loan_approval", features=features(4))).prediction_id
        async with AsyncGatewayClient(gw.grpc_url) as anonymous:
            with pytest.raises(GatewayError) as err:
                await anonymous.predict("loan_approval", features=features(4))
        assert err.value.code is grpc.StatusCode.UNAUTHENTICATED and err.value.attempts == 1
    finally:
        await gw.stop()


async def test_package_installs_into_a_fresh_virtualenv_and_works(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    """``pip install clients/python`` on a clean virtualenv (no project on its path): the wheel
    carries the generated contracts and the client answers from there."""
    # A copy of the package beside the contracts, so the build leaves nothing in the checkout.
    work = tmp_path / "src"
    shutil.copytree(CLIENT, work / "clients" / "python", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    (work / "proto").symlink_to(REPO / "proto")
    env_dir = tmp_path / "venv"
    await asyncio.to_thread(venv.create, env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=clean, cwd=tmp_path)

    installed = await asyncio.to_thread(
        run,
        str(python),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        str(work / "clients" / "python"),
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    script = (
        "import sys, aifactory_client, aifactory.gateway.v1.gateway_service_pb2 as pb\n"
        "assert 'site-packages' in aifactory_client.__file__ and 'site-packages' in pb.__file__\n"
        "from aifactory_client import GatewayClient\n"
        f"with GatewayClient({gateway.grpc_url!r}, timeout_s=20) as gw:\n"
        "    p = gw.predict('loan_approval', entity_id='a5')\n"
        "    print(p.model_version, p.entity_id, round(p.output, 6))\n"
    )
    used = await asyncio.to_thread(run, str(python), "-c", script, timeout=60)
    assert used.returncode == 0, used.stderr[-3000:]
    version, entity, output = used.stdout.split()
    assert version == "1" and entity == "a5" and 0.0 <= float(output) <= 1.0
