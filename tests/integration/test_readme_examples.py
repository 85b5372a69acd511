"""The README's "Calling the factory" examples, run as written against a live gateway (tokens
on), Triton and Kafka: each block marked ``<!-- example: NAME -->`` runs with the README's
variables (GW, OIP, REST, KAFKA, RAW, PREDICTIONS, TOKEN) pointing at this test's stack,
and must exit 0 and print what the README says it does."""

# The gateway fixtures are shared with test_gateway_http (imported by name, as pytest finds them).
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from tests.gateway_support import RunningGateway, gateway_settings, start_gateway
from tests.integration.test_gateway_http import control, feature_store, ready, triton  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = re.compile(r"<!-- example: (\S+) -->\n```(\w+)\n(.*?)\n```", re.S)
# Where `make setup` puts the tools it builds (grpcurl) or installs (kcat, from Debian).
TOOLS = [REPO / "build" / "tools" / "bin", Path(sys.executable).parent]


def examples() -> dict[str, tuple[str, str]]:
    return {name: (lang, code) for name, lang, code in EXAMPLE.findall((REPO / "README.md").read_text())}


def _grpcurl(out: str) -> None:
    assert "aifactory.gateway.v1.GatewayService.Predict" in out, out
    reply = json.loads(out[out.index("{") :])
    # grpcurl writes the proto's own field names.
    assert reply["prediction"]["entity_id"] == "a42" and len(reply["prediction"]["prediction_id"]) == 32
    assert reply["prediction"]["model"]["version"] == "1"


def _tritonclient(out: str) -> None:
    meta, answer = out.strip().splitlines()
    assert meta == "[('INPUT', 'FP32', ['-1', '25'])]", meta
    version, rows = answer.split(" ", 1)
    probabilities = json.loads(rows)
    assert version == "1" and len(probabilities) == 2 and all(abs(sum(p) - 1) < 1e-3 for p in probabilities)


def _json_values(out: str) -> list[object]:
    """The JSON documents curl printed one after the other."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(out.rstrip()):
        value, at = decoder.raw_decode(out, at)
        values.append(value)
        while at < len(out) and out[at].isspace():
            at += 1
    return values


def _curl(out: str) -> None:
    by_id, feedback, health, infer = _json_values(out)  # type: ignore[misc]
    assert by_id["prediction"]["entity_id"] == "a42" and 0 <= by_id["prediction"]["output"] <= 1
    assert len(feedback["feedback_id"]) == 32 and health == {"ready": True}
    assert infer["model_name"] == "loan_approval" and infer["outputs"][0]["shape"] == [1, 2]


def _kcat(out: str) -> None:
    lines = out.strip().splitlines()
    # -o -2 starts two offsets before the end; markers of the producer's batches count too.
    assert 1 <= len(lines) <= 3, out
    assert all("aif-event-type=aifactory.gateway.v1.PredictionLogged" in line for line in lines), out


CHECKS: dict[str, Callable[[str], None]] = {
    "grpcurl": _grpcurl,
    "tritonclient": _tritonclient,
    "curl": _curl,
    "kcat": _kcat,
}


@pytest.fixture
async def stack(
    triton, kafka, new_topic, feature_store, tmp_path
) -> AsyncIterator[tuple[RunningGateway, dict[str, str]]]:  # type: ignore[no-untyped-def]
    from libs.auth import DevAuth

    auth = DevAuth(tmp_path / "auth").ensure()
    predictions = await new_topic("readme.predictions")
    settings = gateway_settings(
        triton.grpc_url,
        kafka.bootstrap_servers,
        static_aliases="loan_approval:champion=1",
        featurestore_target=feature_store[0],
        auth_mode="jwt",
        auth_dir=auth.directory,
        predictions_topic=predictions,
        feedback_topic=await new_topic("readme.feedback"),
        model_promoted_topic=await new_topic("readme.promoted"),
        **control(triton),
    )
    gw = await ready(await start_gateway(settings))
    env = {
        **os.environ,
        "PATH": os.pathsep.join([*(str(p) for p in TOOLS), os.environ.get("PATH", "")]),
        "GW": gw.grpc_url,
        "OIP": gw.oip_url,
        "REST": f"http://127.0.0.1:{gw.service.http_port}",
        "KAFKA": kafka.bootstrap_servers,
        "RAW": await new_topic("readme.raw"),
        "PREDICTIONS": predictions,
        "TOKEN": auth.issue("shop", {"loan_approval": ["app"]}),
    }
    try:
        yield gw, env
    finally:
        await gw.stop()


def test_every_example_has_a_check() -> None:
    assert list(examples()) == list(CHECKS), "an example without a check (or a check without its example)"


async def test_readme_examples_run_against_a_live_gateway(stack, kafka) -> None:  # type: ignore[no-untyped-def]
    _, env = stack
    for tool in ("grpcurl", "kcat", "curl"):
        if shutil.which(tool, path=env["PATH"]) is None:
            pytest.fail(f"{tool} is not installed: `make setup` installs it (deploy/setup.sh)")
    for name, (lang, code) in examples().items():
        argv = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        text = out.decode()
        assert proc.returncode == 0, f"example {name} failed:\n{text}\n{err.decode()}"
        CHECKS[name](text)
    # The producer's record is on the raw topic, keyed by its entity, as the README says.
    consumer = AIOKafkaConsumer(
        env["RAW"], bootstrap_servers=kafka.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()
    assert record.key == b"a42" and json.loads(record.value)["applicant_id"] == "a42"
