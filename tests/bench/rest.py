"""The gateway's business API over HTTP/JSON against the same API over gRPC, same run.

One gateway process (``python -m services.gateway``: auth off, prediction log on, to a bench
topic) on a Triton of the bench's own (loan_approval version 1). Both transports predict
with the same inline features (one row; no feature store), each from the leanest client of
its kind in the bench process: gRPC with a pre-encoded ``PredictRequest`` (a blocking stub
for latency, 8 grpc.aio callers for throughput), HTTP/1.1 keep-alive with a pre-encoded
``POST /v1/predict`` (``http.client`` for latency, 8 asyncio connections for throughput).
Rounds alternate, so both see the same background load.

Figures, the gRPC one as baseline:
- rest.predict.p50_ms / p99_ms: concurrency 1
- rest.predict.rps_c8: requests per second at concurrency 8
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import grpc
import numpy as np

from tests.bench.gateway import CONCURRENCY, _free_port, _pct, _wait, calls_per_s
from tests.bench.procs import spawn_gateway
from tests.bench.report import Figure

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 10
LATENCY_CALLS = 100  # per round and transport
WARMUP = 200
RPS_SECONDS = 1.5
RPS_ROUNDS = 3
PREDICT = "/aifactory.gateway.v1.GatewayService/Predict"


def _features() -> dict[str, float | int]:
    return {
        "salary": 52_000.0,
        "commission": 0.0,
        "age": 41,
        "elevel": 2,
        "car": 3,
        "zipcode": 1,
        "hvalue": 150_000.0,
        "hyears": 10,
        "loan": 120_000.0,
        "loan_to_salary": 120_000.0 / 52_000.0,
        "applications_10m": 1,
        "loan_mean_10m": 120_000.0,
        "loan_max_10m": 120_000.0,
    }


def _grpc_request() -> bytes:
    from aifactory.gateway.v1 import gateway_service_pb2 as pb
    from services.gateway.inputs import to_value

    features = {k: to_value(v) for k, v in _features().items()}
    return pb.PredictRequest(use_case="loan_approval", features=features).SerializeToString()  # type: ignore[no-any-return]


def _http_body() -> bytes:
    return json.dumps({"use_case": "loan_approval", "features": _features()}).encode()


def _http_request(port: int) -> bytes:
    body = _http_body()
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def http_calls_per_s(port: int, seconds: float, warmup_s: float = 0.5) -> float:
    """``POST /v1/predict`` per second over CONCURRENCY keep-alive connections."""
    request = _http_request(port)
    done = 0

    async def worker(stop: float, count: bool) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"bench: REST predict answered {head[:40]!r}")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if count:
                    done += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(time.perf_counter() + warmup_s, False) for _ in range(CONCURRENCY)))
    started = time.perf_counter()
    await asyncio.gather(*(worker(started + seconds, True) for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - started)


def measure_rest(bootstrap: str) -> list[Figure]:
    from libs.usecase import load_default
    from tests.gateway_support import export_version, own_triton

    triton = own_triton("triton-bench-rest", 28511)
    logs = ROOT / "build" / "rest-bench"
    logs.mkdir(parents=True, exist_ok=True)
    export_version(triton.model_repository, load_default()["loan_approval"], 1)
    grpc_port, http_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "AIF_GATEWAY_AUTH_MODE": "off",
        "AIF_GATEWAY_GRPC_PORT": str(grpc_port),
        "AIF_GATEWAY_OIP_PORT": "-1",
        "AIF_GATEWAY_HTTP_PORT": str(http_port),
        "AIF_GATEWAY_METRICS_PORT": "0",
        "AIF_GATEWAY_TRITON_URL": triton.grpc_url,
        "AIF_GATEWAY_TRITON_CONTROL_KEY": getattr(triton, "control_key", ""),
        "AIF_GATEWAY_REGISTRY_TARGET": "",
        "AIF_GATEWAY_STATIC_ALIASES": "loan_approval:champion=1",
        "AIF_GATEWAY_USE_CASES": "loan_approval",
        "AIF_GATEWAY_FEATURESTORE_TARGET": "127.0.0.1:1",  # inline features only
        "AIF_GATEWAY_KAFKA_BOOTSTRAP": bootstrap,
        "AIF_GATEWAY_PREDICTIONS_TOPIC": f"bench.rest.predictions.{uuid.uuid4().hex[:8]}",
        "AIF_GATEWAY_PREDLOG_WAL_DIR": str(logs / f"wal-{uuid.uuid4().hex[:8]}"),
        "AIF_GATEWAY_LOG_LEVEL": "WARNING",
    }
    proc = spawn_gateway(env, logs / "gateway.log")
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    try:
        payload, body = _grpc_request(), _http_body()
        headers = {"content-type": "application/json"}
        predict = channel.unary_unary(PREDICT)

        def rest() -> bytes:
            conn.request("POST", "/v1/predict", body, headers)
            reply = conn.getresponse()
            data = reply.read()
            if reply.status != 200:
                raise RuntimeError(f"bench: REST predict answered {reply.status}: {data[:200]!r}")
            return data

        _wait("gateway (gRPC)", lambda: predict(payload, timeout=5) is not None)
        _wait("gateway (HTTP)", lambda: rest() is not None)
        # Both answer the same (the same model on the same features).
        over_http = json.loads(rest())["prediction"]["output"]
        from aifactory.gateway.v1 import gateway_service_pb2 as pb

        over_grpc = pb.PredictResponse.FromString(predict(payload, timeout=5)).prediction.output.double_value
        if not np.isclose(over_http, over_grpc, rtol=1e-6):
            raise RuntimeError(f"bench: REST answered {over_http}, gRPC {over_grpc}")
        for _ in range(WARMUP):
            predict(payload, timeout=5)
            rest()
        lat: dict[str, list[float]] = {"grpc": [], "rest": []}
        calls = {"grpc": lambda: predict(payload, timeout=5), "rest": rest}
        for r in range(ROUNDS):
            for name in ("grpc", "rest") if r % 2 == 0 else ("rest", "grpc"):
                for _ in range(LATENCY_CALLS):
                    started = time.perf_counter()
                    calls[name]()
                    lat[name].append(time.perf_counter() - started)
        rps: dict[str, list[float]] = {"grpc": [], "rest": []}
        for r in range(RPS_ROUNDS):
            for name in ("grpc", "rest") if r % 2 == 0 else ("rest", "grpc"):
                if name == "grpc":
                    rps[name].append(
                        asyncio.run(
                            calls_per_s(f"127.0.0.1:{grpc_port}", payload, RPS_SECONDS, method=PREDICT)
                        )
                    )
                else:
                    rps[name].append(asyncio.run(http_calls_per_s(http_port, RPS_SECONDS)))
    finally:
        conn.close()
        channel.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        triton.stop()  # as the mtls and otlp parts do: no Triton outlives the bench
    note = "inline features, 1 row; same gateway process, alternating rounds"
    return [
        Figure(
            "rest.predict.p50_ms",
            _pct(lat["rest"], 50),
            "ms",
            "grpc.predict.p50_ms",
            _pct(lat["grpc"], 50),
            note,
        ),
        Figure(
            "rest.predict.p99_ms",
            _pct(lat["rest"], 99),
            "ms",
            "grpc.predict.p99_ms",
            _pct(lat["grpc"], 99),
            note,
        ),
        Figure(
            "rest.predict.rps_c8",
            float(np.mean(rps["rest"])),
            "req/s",
            "grpc.predict.rps_c8",
            float(np.mean(rps["grpc"])),
            note,
        ),
    ]
