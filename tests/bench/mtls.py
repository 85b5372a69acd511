"""What trust costs on the hot path: the gateway with mutual TLS and token checks against the
same gateway in plaintext with auth off, in the same rounds.

Two gateway processes (``python -m services.gateway``: static champion, prediction log on)
on one Triton of the bench's own. The secured one has the certificates the stack gives a
service with ``AIF_STACK_TLS=mtls`` (a development CA, its own pair, client certificates
required) and verifies a signed token on every call (``AIF_AUTH_MODE=jwt``); its client
holds a certificate from the same CA and an ``app`` token for the use case. The rounds
alternate which goes first, so both see the same background load.

- mtls.oip.p50_ms / mtls.oip.rps_c8: OIP ``ModelInfer`` (features inline, 1 row), at
  concurrency 1 and 8
- mtls.predict.p50_ms / mtls.predict.rps_c8: business ``Predict`` (the shared interceptor's
  token check), c1 and c8

Targets (issue 16): p50 within +0.15 ms of plaintext, throughput at c8 at least 0.85× of
plaintext; each row's note says whether it met its target.

The p50s come from calls taken in turns, one to each gateway
(:func:`tests.bench.gateway.paired_latencies`); the throughputs from windows that alternate
which gateway goes first.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from libs.rpc import ClientTls, blocking_channel, channel
from tests.bench.gateway import paired_latencies
from tests.bench.otlp import INFER, PREDICT, UC, _payloads
from tests.bench.procs import spawn_gateway
from tests.bench.report import Figure
from tests.otel_support import free_port

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 6
LATENCY_CALLS = 300
WARMUP = 300
RPS_SECONDS = 2.0
CONCURRENCY = 8
# Issue 16's targets: what trust may cost against plaintext.
P50_BUDGET_MS = 0.15
RPS_FLOOR = 0.85
NAMES = ("mtls.oip.p50_ms", "mtls.oip.rps_c8", "mtls.predict.p50_ms", "mtls.predict.rps_c8")

Metadata = tuple[tuple[str, str], ...]


def _latencies(call: Callable[..., bytes], payload: bytes, metadata: Metadata, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call(payload, metadata=metadata, timeout=5)
        out.append(time.perf_counter() - started)
    return out


async def _calls_per_s(
    target: str, tls: ClientTls | None, metadata: Metadata, method: str, payload: bytes
) -> float:
    """Calls per second at CONCURRENCY over one channel (as tests.bench.gateway), after a warm-up."""
    async with channel(target, tls, plain=True) as ch:
        call = ch.unary_unary(method)
        done = 0
        stop = time.perf_counter() + 0.3

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await call(payload, metadata=metadata)
                done += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        done = 0
        started = time.perf_counter()
        stop = started + RPS_SECONDS
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return done / (time.perf_counter() - started)


def _wait(what: str, check: Callable[[], object], timeout: float = 180.0) -> None:
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


def _note(name: str, value: float, base: float) -> str:
    if name.endswith("p50_ms"):
        met = value - base <= P50_BUDGET_MS
        return f"target ≤ +{P50_BUDGET_MS} ms: {'met' if met else 'MISSED'} ({value - base:+.3f} ms)"
    met = value >= RPS_FLOOR * base
    return f"target ≥ {RPS_FLOOR}×: {'met' if met else 'MISSED'} ({value / base:.3f}×)"


def measure_mtls(bootstrap: str) -> list[Figure]:
    from libs.auth import DevAuth
    from libs.auth.tls import DevPki
    from libs.usecase import load_default
    from tests.gateway_support import export_version, own_triton

    logs = ROOT / "build" / "mtls-bench"
    logs.mkdir(parents=True, exist_ok=True)
    secrets = Path(tempfile.mkdtemp(prefix="aif-mtls-bench-"))
    auth = DevAuth(secrets / "auth").ensure()
    pki = DevPki(secrets / "pki").ensure()
    triton = own_triton("triton-bench-mtls", 28561)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        export_version(triton.model_repository, load_default()[UC], 1)
        ports = {k: (free_port(), free_port()) for k in ("plain", "mtls")}
        common = {
            **os.environ,
            "AIF_GATEWAY_METRICS_PORT": "0",
            "AIF_GATEWAY_TRITON_URL": triton.grpc_url,
            # Model control (loading the champion) needs Triton's key when it is restricted.
            "AIF_GATEWAY_TRITON_CONTROL_KEY": getattr(triton, "control_key", ""),
            "AIF_GATEWAY_REGISTRY_TARGET": "",
            "AIF_GATEWAY_STATIC_ALIASES": f"{UC}:champion=1",
            "AIF_GATEWAY_USE_CASES": UC,
            "AIF_GATEWAY_KAFKA_BOOTSTRAP": bootstrap,
            "AIF_GATEWAY_LOG_LEVEL": "WARNING",
        }
        secured = {**auth.env(), **pki.env("gateway"), "AIF_GATEWAY_AUTH_MODE": "jwt"}
        for key, (g, o) in ports.items():
            env = {
                **common,
                **(secured if key == "mtls" else {"AIF_GATEWAY_AUTH_MODE": "off"}),
                "AIF_GATEWAY_GRPC_PORT": str(g),
                "AIF_GATEWAY_OIP_PORT": str(o),
                "AIF_GATEWAY_PREDICTIONS_TOPIC": f"bench.mtls.predictions.{uuid.uuid4().hex[:8]}",
            }
            procs.append(spawn_gateway(env, logs / f"gateway-{key}.log"))
        tls: dict[str, ClientTls | None] = {"plain": None, "mtls": pki.client("bench-app")}
        token = auth.issue("bench-app", {UC: ["app"]}, 3600)
        metadata: dict[str, Metadata] = {"plain": (), "mtls": (("authorization", f"Bearer {token}"),)}
        predict, oip = _payloads()
        payloads = {"predict": (PREDICT, predict), "oip": (INFER, oip)}
        channels = {
            (key, path): blocking_channel(f"127.0.0.1:{ports[key][0 if path == 'predict' else 1]}", tls[key])
            for key in ports
            for path in payloads
        }
        calls = {k: ch.unary_unary(payloads[k[1]][0]) for k, ch in channels.items()}
        for (key, path), call in calls.items():
            body = payloads[path][1]
            md = metadata[key]
            _wait(f"gateway {path} ({key})", lambda c=call, b=body, m=md: c(b, metadata=m, timeout=5))  # type: ignore[misc]
            _latencies(call, body, metadata[key], WARMUP)
        lat: dict[tuple[str, str], list[float]] = {k: [] for k in calls}
        rps: dict[tuple[str, str], list[float]] = {k: [] for k in calls}
        order = list(ports)
        for r in range(ROUNDS):
            for path, (_, body) in payloads.items():
                turns = paired_latencies(
                    {
                        key: partial(calls[key, path], body, metadata=metadata[key], timeout=5)
                        for key in order
                    },
                    LATENCY_CALLS,
                )
                for key, seconds in turns.items():
                    lat[key, path] += seconds
            for key in order if r % 2 == 0 else order[::-1]:
                for path, (method, body) in payloads.items():
                    target = f"127.0.0.1:{ports[key][0 if path == 'predict' else 1]}"
                    rps[key, path].append(
                        asyncio.run(_calls_per_s(target, tls[key], metadata[key], method, body))
                    )
        for ch in channels.values():
            ch.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        triton.stop()
        shutil.rmtree(secrets, ignore_errors=True)

    def p50(key: str, path: str) -> float:
        return float(np.percentile(np.array(lat[key, path]) * 1000, 50))

    figures = []
    for path in payloads:
        for name, value, base, unit in (
            (f"mtls.{path}.p50_ms", p50("mtls", path), p50("plain", path), "ms"),
            (
                f"mtls.{path}.rps_c8",
                float(np.median(rps["mtls", path])),
                float(np.median(rps["plain", path])),
                "req/s",
            ),
        ):
            baseline = f"plaintext, auth off.{path}.{name.rsplit('.', 1)[1]}"
            figures.append(Figure(name, value, unit, baseline, base, _note(name, value, base)))
    return figures
