"""The gateway exporting its traces and metrics over OTLP to a real collector, against the
same gateway with export off, in the same rounds.

Two gateway processes (``python -m services.gateway``: auth off, static champion, prediction
log on) on one Triton of the bench's own: one with ``OTEL_TRACES_EXPORTER=otlp`` and
``OTEL_METRICS_EXPORTER=otlp`` to ``otelcol-aif`` (debug exporter, basic verbosity: the
collector's own work is not measured on disk), SDK defaults otherwise (batch span
processor, every sampled span exported; metrics every ``METRIC_INTERVAL_MS``); the other
with both off (the Prometheus endpoint stays on in both). Both see the same background
load: the throughput comes from load moved between the two every quarter second
(:func:`tests.bench.gateway.alternating_calls_per_s`, ``RPS_SECONDS`` per gateway), the
p99 from calls taken in turns, one to each gateway (:func:`tests.bench.gateway.paired_latencies`).
The note gives the spread of the throughput ratio over 4-s blocks and each gateway's CPU
time per call.

- otlp.predict.rps_c8: business ``Predict`` with inline features (a traced call: server span,
  Triton client span, metrics), 8 concurrent callers; baseline: export off
- otlp.oip.rps_c8: OIP ``ModelInfer`` (untraced hot path: its latency histogram only), c8
- otlp.predict.p99_ms: ``Predict`` at concurrency 1
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from functools import partial
from pathlib import Path

import grpc
import numpy as np

from libs.telemetry import spanwire
from tests.bench.gateway import SLICE_S, alternating_calls_per_s, block_ratios, latencies, paired_latencies
from tests.bench.procs import cpu_seconds, spawn_gateway
from tests.bench.report import Figure
from tests.otel_support import OTELCOL, Collector, free_port

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 6
# Seconds of load per gateway (in quarter-second slices): the ratio of the whole has a
# standard deviation of about 1 % here at 30 s (its 4-s blocks: some 3 %).
RPS_SECONDS = 30.0
OIP_RPS_SECONDS = 15.0
BLOCK_S = 4.0
LATENCY_CALLS = 500
WARMUP = 300
CONCURRENCY = 8
METRIC_INTERVAL_MS = 10_000
UC = "loan_approval"


def _payloads() -> tuple[bytes, bytes]:
    from tritonclient.grpc import service_pb2

    from aifactory.common.v1 import common_pb2
    from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
    from libs.usecase import load_default

    names = load_default()[UC].model_inputs()
    rng = np.random.default_rng(7)
    values = rng.uniform(0, 100, size=len(names))
    predict = gw_pb.PredictRequest(
        use_case=UC,
        features={n: common_pb2.Value(double_value=float(v)) for n, v in zip(names, values, strict=True)},
    )
    oip = service_pb2.ModelInferRequest(model_name=UC)
    oip.inputs.add(name="INPUT", datatype="FP32", shape=[1, len(names)])
    oip.raw_input_contents.append(values.astype(np.float32).reshape(1, -1).tobytes())
    return predict.SerializeToString(), oip.SerializeToString()


PREDICT = "/aifactory.gateway.v1.GatewayService/Predict"
INFER = "/inference.GRPCInferenceService/ModelInfer"


def _wait(what: str, check, timeout: float = 180.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            check()
            return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
            time.sleep(0.3)
    raise RuntimeError(f"bench: {what} not ready after {timeout:.0f}s (last: {last!r:.300})")


def measure_otlp(bootstrap: str) -> list[Figure]:
    from libs.usecase import load_default
    from tests.gateway_support import export_version, own_triton

    if not OTELCOL.exists():
        note = f"missed: {OTELCOL} missing (make setup)"
        names = ("otlp.predict.rps_c8", "otlp.oip.rps_c8", "otlp.predict.p99_ms")
        return [Figure(n, None, "", "export off", None, note, failed=True) for n in names]
    logs = ROOT / "build" / "otlp-bench"
    logs.mkdir(parents=True, exist_ok=True)
    collector = Collector(logs / "otelcol", files=False).start()
    triton = own_triton("triton-bench-otlp", 28541)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        export_version(triton.model_repository, load_default()[UC], 1)
        ports = {k: (free_port(), free_port()) for k in ("off", "on")}
        base = {
            **os.environ,
            "AIF_GATEWAY_AUTH_MODE": "off",
            "AIF_GATEWAY_METRICS_PORT": "0",
            "AIF_GATEWAY_TRITON_URL": triton.grpc_url,
            "AIF_GATEWAY_TRITON_CONTROL_KEY": triton.control_key,
            "AIF_GATEWAY_REGISTRY_TARGET": "",
            "AIF_GATEWAY_STATIC_ALIASES": f"{UC}:champion=1",
            "AIF_GATEWAY_USE_CASES": UC,
            "AIF_GATEWAY_KAFKA_BOOTSTRAP": bootstrap,
            "AIF_GATEWAY_LOG_LEVEL": "WARNING",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        }
        otlp = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_METRIC_EXPORT_INTERVAL": str(METRIC_INTERVAL_MS),
        }
        for key, (g, o) in ports.items():
            env = {
                **base,
                **(otlp if key == "on" else {}),
                "AIF_GATEWAY_GRPC_PORT": str(g),
                "AIF_GATEWAY_OIP_PORT": str(o),
                "AIF_GATEWAY_PREDICTIONS_TOPIC": f"bench.otlp.predictions.{uuid.uuid4().hex[:8]}",
            }
            procs.append(spawn_gateway(env, logs / f"gateway-{key}.log"))
        predict, oip = _payloads()
        channels = {k: grpc.insecure_channel(f"127.0.0.1:{g}") for k, (g, _) in ports.items()}
        calls = {k: ch.unary_unary(PREDICT) for k, ch in channels.items()}
        for key, call in calls.items():
            _wait(f"gateway ({key})", lambda c=call: c(predict, timeout=5))  # type: ignore[misc]
            latencies(call, predict, WARMUP)
        lat: dict[str, list[float]] = {k: [] for k in ports}
        order = list(ports)
        # CPU seconds of each gateway over the calls taken in turns (both serve the same
        # calls at the same time): what export costs a call, beside the throughput.
        pids = {"off": procs[0].pid, "on": procs[1].pid}
        cpu = dict.fromkeys(pids, 0.0)
        for _ in range(ROUNDS):
            before = {k: cpu_seconds(pid) for k, pid in pids.items()}
            turns = paired_latencies({k: partial(calls[k], predict) for k in order}, LATENCY_CALLS)
            for key, pid in pids.items():
                cpu[key] += cpu_seconds(pid) - before[key]
            for key, seconds in turns.items():
                lat[key] += seconds
        rps = {
            "predict": asyncio.run(
                alternating_calls_per_s(
                    {k: f"127.0.0.1:{g}" for k, (g, _) in ports.items()}, predict, RPS_SECONDS, method=PREDICT
                )
            ),
            "oip": asyncio.run(
                alternating_calls_per_s(
                    {k: f"127.0.0.1:{o}" for k, (_, o) in ports.items()}, oip, OIP_RPS_SECONDS, method=INFER
                )
            ),
        }
        for ch in channels.values():
            ch.close()

        def p99(key: str) -> float:
            return float(np.percentile(np.array(lat[key]) * 1000, 99))

        blocks = block_ratios(rps["predict"]["on"], rps["predict"]["off"], max(1, round(BLOCK_S / SLICE_S)))
        per_call = {k: cpu[k] / (ROUNDS * LATENCY_CALLS) * 1e6 for k in cpu}
        note = (
            f"{RPS_SECONDS:g} s a gateway in {SLICE_S * 1000:.0f}-ms slices, alternating (the ratio over"
            f" {len(blocks)} blocks of {BLOCK_S:.0f} s: min {min(blocks):.3f}, median {np.median(blocks):.3f},"
            f" max {max(blocks):.3f}); gateway CPU a c1 call: {per_call['on']:.0f} µs exporting,"
            f" {per_call['off']:.0f} µs not ({per_call['on'] / per_call['off'] - 1:+.1%}); collector debug exporter;"
            f" span encoder {'compiled' if spanwire._span_field is not None else 'Python (not compiled)'}"
        )

        def mean(part: str, key: str) -> float:
            return float(np.mean(rps[part][key]))

        return [
            Figure(
                "otlp.predict.rps_c8",
                mean("predict", "on"),
                "req/s",
                "export off",
                mean("predict", "off"),
                note,
            ),
            Figure(
                "otlp.oip.rps_c8",
                mean("oip", "on"),
                "req/s",
                "export off",
                mean("oip", "off"),
            ),
            Figure("otlp.predict.p99_ms", p99("on"), "ms", "export off", p99("off")),
        ]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        collector.stop()
        triton.stop()
