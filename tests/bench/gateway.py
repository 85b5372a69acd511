"""The serving gateway against Triton called directly, on the same model and the same client.

Everything runs as its own process on this machine: a Triton of the bench's own
(loan_approval version 1, exported with the registry's exporter), the gateway
(``python -m services.gateway``: auth off, prediction log on, to a bench topic), and a
stub FeatureStoreService (canned rows over real gRPC, its own process) for predictions
by entity id: the bench measures the gateway, not the feature store.

Clients (the bench process): a blocking gRPC stub sending one pre-encoded
``ModelInferRequest`` (1 row) for latency at concurrency 1; a grpc.aio client with 8
concurrent callers for throughput; the business ``Predict`` by entity id for the
entity figure. Gateway and Triton runs alternate in rounds, so both see the same
background load. perf_analyzer (tritonclient 2.41's binary) loads both too.

Figures, each with Triton direct as its baseline:
- gateway.inline.p50_ms / p99_ms: OIP ModelInfer, features inline, concurrency 1
- gateway.entity.p99_ms: business Predict by entity id (features fetched online), c1
- gateway.inline.rps_c8: OIP ModelInfer throughput at concurrency 8
- perf_analyzer.p50_ms (c1) and perf_analyzer.rps_c8
- floor.*: the same measurements through a bare Python hop (``passthrough`` below: a
  grpc.aio server on uvloop that forwards the request bytes to Triton and returns its
  bytes; for the entity figure it first calls the stub feature store with a fixed
  request). No routing, validation, log or telemetry: what any Python gateway pays on
  this machine, measured in the same rounds, to read the gateway's figures against. Its
  by-entity calls send pre-encoded bytes; the gateway's go through the generated stub,
  as an app's would (encoding the request and decoding the answer: about 2 µs here).
- gateway_baseline.* (opt-in: ``AIF_BENCH_GATEWAY_BASELINE_TREE=/path`` to another checkout,
  say a git worktree of the last commit): that tree's gateway, in its own process on its
  own ports, measured in the same rounds as this one (the two alternate which goes
  first), to compare a change of the gateway with what it replaces on the same load.
"""

from __future__ import annotations

import asyncio
import csv
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import numpy as np

from tests.bench.report import Figure

ROOT = Path(__file__).resolve().parents[2]
# Short alternating rounds: a burst of background load hits every target alike.
ROUNDS = 30
LATENCY_CALLS = 100  # per round and target
WARMUP = 300
RPS_SECONDS = 1.5
RPS_ROUNDS = 4
CONCURRENCY = 8
ENTITIES = 1000
FEATURE_NOTE = "entity features: stub FeatureStoreService (own process, gRPC)"
FLOOR_NOTE = "bare grpc.aio pass-through, same rounds"
BASELINE_TREE = "AIF_BENCH_GATEWAY_BASELINE_TREE"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request() -> bytes:
    from tritonclient.grpc import service_pb2

    from libs.usecase import load_default

    width = len(load_default()["loan_approval"].model_inputs())
    req = service_pb2.ModelInferRequest(model_name="loan_approval")
    req.inputs.add(name="INPUT", datatype="FP32", shape=[1, width])
    rng = np.random.default_rng(7)
    req.raw_input_contents.append(rng.uniform(0, 1000, size=(1, width)).astype(np.float32).tobytes())
    return req.SerializeToString()


def _wait(what: str, check, timeout: float = 180.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench: {what} not ready after {timeout:.0f}s")
        time.sleep(0.2)


# -- the stub feature store (``python -m tests.bench.gateway stub-featurestore PORT``) ----


def serve_stub_feature_store(port: int) -> None:
    from aifactory.featurestore.v1 import featurestore_service_pb2 as pb
    from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as pb_grpc
    from libs.usecase import load_default

    columns = load_default()["loan_approval"].model_inputs()
    rng = np.random.default_rng(3)
    rows: dict[str, pb.FeatureRow] = {}
    for i in range(ENTITIES):
        row = pb.FeatureRow(entity_id=f"a{i}", found=True)
        for name, value in zip(columns, rng.uniform(0, 1000, size=len(columns)).tolist(), strict=True):
            row.values[name].double_value = value
        rows[row.entity_id] = row

    class Stub(pb_grpc.FeatureStoreServiceServicer):
        async def GetOnlineFeatures(self, request, context):  # type: ignore[no-untyped-def]
            return pb.GetOnlineFeaturesResponse(
                rows=[rows.get(e) or pb.FeatureRow(entity_id=e) for e in request.entity_ids]
            )

    async def main() -> None:
        server = grpc.aio.server()
        pb_grpc.add_FeatureStoreServiceServicer_to_server(Stub(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def serve_passthrough(port: int, triton_url: str, feature_store_url: str) -> None:
    """The floor: ModelInfer bytes forwarded to Triton; Predict = a fixed feature-store call,
    then the bench's fixed ModelInfer request (the response is Triton's bytes)."""
    from aifactory.featurestore.v1 import featurestore_service_pb2 as pb

    def same(b: bytes) -> bytes:
        return b

    async def main() -> None:
        to_triton = grpc.aio.insecure_channel(triton_url).unary_unary(
            "/inference.GRPCInferenceService/ModelInfer", request_serializer=same, response_deserializer=same
        )
        to_features = grpc.aio.insecure_channel(feature_store_url).unary_unary(
            "/aifactory.featurestore.v1.FeatureStoreService/GetOnlineFeatures",
            request_serializer=same,
            response_deserializer=same,
        )
        features_request = pb.GetOnlineFeaturesRequest(
            use_case="loan_approval", entity_ids=["a1"]
        ).SerializeToString()
        infer_request = _request()

        async def infer(request: bytes, context: object) -> bytes:
            return await to_triton(request, timeout=5)  # type: ignore[no-any-return]

        async def predict(request: bytes, context: object) -> bytes:
            await to_features(features_request, timeout=5)
            return await to_triton(infer_request, timeout=5)  # type: ignore[no-any-return]

        def handler(fn: object) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=same, response_serializer=same
            )

        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "inference.GRPCInferenceService", {"ModelInfer": handler(infer)}
                ),
                grpc.method_handlers_generic_handler(
                    "aifactory.gateway.v1.GatewayService", {"Predict": handler(predict)}
                ),
            )
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    try:  # as the gateway runs
        import uvloop
    except ImportError:
        pass
    else:
        uvloop.install()
    asyncio.run(main())


# -- clients --------------------------------------------------------------------------


def _latencies(call, payload: bytes, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call(payload)
        out.append(time.perf_counter() - started)
    return out


async def _rps(target: str, payload: bytes, seconds: float) -> float:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        done = 0
        loop_stop = time.perf_counter() + 0.5  # warm-up

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < loop_stop:
                await call(payload)
                done += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        done = 0
        started = time.perf_counter()
        loop_stop = started + seconds
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return done / (time.perf_counter() - started)


def _perf_analyzer(url: str, concurrency: int, out: Path) -> dict[str, float] | None:
    """perf_analyzer's figures, or None (said on stderr) when it finds no stable window (on
    a shared 2-core box a burst of background load can last longer than its trials) or
    cannot be set up here."""
    found = subprocess.run(
        ["bash", str(ROOT / "deploy/tools/perf_analyzer.sh"), "path"], capture_output=True, text=True
    )
    if found.returncode != 0:
        print(
            f"bench: no perf_analyzer ({(found.stdout + found.stderr).strip().splitlines()[-1:]})",
            file=sys.stderr,
        )
        return None
    tool = found.stdout.strip()
    for stability in ("50", "100"):
        out.unlink(missing_ok=True)
        cmd = [
            tool,
            "-m",
            "loan_approval",
            "-u",
            url,
            "-i",
            "grpc",
            "--concurrency-range",
            str(concurrency),
            "--measurement-mode",
            "count_windows",
            "--measurement-request-count",
            "3000",
            "-s",
            stability,
            "--max-trials",
            "8",
            "-f",
            str(out),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode == 0 and out.exists():
            with out.open() as f:
                row = next(csv.DictReader(f))
            return {
                "p50_ms": float(row["p50 latency"]) / 1000,
                "p99_ms": float(row["p99 latency"]) / 1000,
                "rps": float(row["Inferences/Second"]),
            }
    print(
        f"bench: perf_analyzer on {url} (c{concurrency}) found no stable measurement: "
        f"{(done.stdout + done.stderr).strip().splitlines()[-1:]}",
        file=sys.stderr,
    )
    return None


def _pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000, q))


# -- the measurement ------------------------------------------------------------------


def measure_gateway(bootstrap: str) -> list[Figure]:
    from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
    from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
    from libs.usecase import load_default
    from tests.gateway_support import export_version, own_triton

    triton = own_triton("triton-bench", 28491)
    procs: list[subprocess.Popen[bytes]] = []
    logs = ROOT / "build" / "gateway-bench"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        export_version(triton.model_repository, load_default()["loan_approval"], 1)
        fs_port, grpc_port, oip_port = _free_port(), _free_port(), _free_port()
        env = dict(os.environ)
        env.update(
            {
                "AIF_GATEWAY_AUTH_MODE": "off",
                "AIF_GATEWAY_GRPC_PORT": str(grpc_port),
                "AIF_GATEWAY_OIP_PORT": str(oip_port),
                "AIF_GATEWAY_METRICS_PORT": "0",
                "AIF_GATEWAY_TRITON_URL": triton.grpc_url,
                "AIF_GATEWAY_TRITON_MODEL_REPOSITORY": str(triton.model_repository),
                "AIF_GATEWAY_REGISTRY_TARGET": "",
                "AIF_GATEWAY_STATIC_ALIASES": "loan_approval:champion=1",
                "AIF_GATEWAY_USE_CASES": "loan_approval",
                "AIF_GATEWAY_FEATURESTORE_TARGET": f"127.0.0.1:{fs_port}",
                "AIF_GATEWAY_KAFKA_BOOTSTRAP": bootstrap,
                "AIF_GATEWAY_PREDICTIONS_TOPIC": f"bench.gateway.predictions.{uuid.uuid4().hex[:8]}",
                "AIF_GATEWAY_LOG_LEVEL": "WARNING",
            }
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.bench.gateway", "stub-featurestore", str(fs_port)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=(logs / "featurestore.log").open("wb"),
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "services.gateway"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(logs / "gateway.log").open("wb"),
            )
        )
        tree = os.environ.get(BASELINE_TREE, "")
        base_grpc_port, base_oip_port = _free_port(), _free_port()
        if tree:
            base_env = {
                **env,
                "AIF_GATEWAY_GRPC_PORT": str(base_grpc_port),
                "AIF_GATEWAY_OIP_PORT": str(base_oip_port),
                "AIF_GATEWAY_PREDICTIONS_TOPIC": f"bench.gateway.predictions.{uuid.uuid4().hex[:8]}",
                "PYTHONPATH": f"{tree}:{tree}/proto",
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "services.gateway"],
                    cwd=tree,
                    env=base_env,
                    stdout=subprocess.DEVNULL,
                    stderr=(logs / "gateway-baseline.log").open("wb"),
                )
            )
        floor_port = _free_port()
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.bench.gateway",
                    "passthrough",
                    str(floor_port),
                    triton.grpc_url,
                    f"127.0.0.1:{fs_port}",
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=(logs / "passthrough.log").open("wb"),
            )
        )
        direct_url, gateway_url, floor_url = (
            triton.grpc_url,
            f"127.0.0.1:{oip_port}",
            f"127.0.0.1:{floor_port}",
        )
        payload = _request()
        channels = [grpc.insecure_channel(url) for url in (direct_url, gateway_url, floor_url)]
        direct, gateway, floor = (
            ch.unary_unary("/inference.GRPCInferenceService/ModelInfer") for ch in channels
        )
        business_ch = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        predict = gw_grpc.GatewayServiceStub(business_ch).Predict
        floor_predict = channels[2].unary_unary("/aifactory.gateway.v1.GatewayService/Predict")
        _wait("triton model", lambda: direct(payload, timeout=5) is not None)
        _wait("gateway", lambda: gateway(payload, timeout=5) is not None)
        _wait(
            "gateway by entity",
            lambda: (
                predict(gw_pb.PredictRequest(use_case="loan_approval", entity_id="a1"), timeout=5) is not None
            ),
        )
        _wait("pass-through", lambda: floor(payload, timeout=5) is not None)
        base_url = f"127.0.0.1:{base_oip_port}"
        base_ch = (
            [grpc.insecure_channel(url) for url in (base_url, f"127.0.0.1:{base_grpc_port}")] if tree else []
        )
        if tree:
            base = base_ch[0].unary_unary("/inference.GRPCInferenceService/ModelInfer")
            base_predict = gw_grpc.GatewayServiceStub(base_ch[1]).Predict
            _wait("baseline gateway", lambda: base(payload, timeout=5) is not None)
            _wait(
                "baseline gateway by entity",
                lambda: (
                    base_predict(gw_pb.PredictRequest(use_case="loan_approval", entity_id="a1"), timeout=5)
                    is not None
                ),
            )

        lat: dict[str, list[float]] = {
            "direct": [],
            "gateway": [],
            "entity": [],
            "floor": [],
            "floor_entity": [],
            "base": [],
            "base_entity": [],
        }
        entity_requests = [
            gw_pb.PredictRequest(use_case="loan_approval", entity_id=f"a{i % ENTITIES}")
            for i in range(ROUNDS * LATENCY_CALLS)
        ]
        floor_request = entity_requests[0].SerializeToString()
        for call in (direct, gateway, floor):
            _latencies(call, payload, WARMUP)
        _latencies(floor_predict, floor_request, WARMUP)
        for _ in range(WARMUP):
            predict(entity_requests[0])
        # The gateways under test, in the order of a round: this tree's, then the baseline's.
        gateways = [("gateway", "entity", gateway, predict)]
        if tree:
            _latencies(base, payload, WARMUP)
            _latencies(base_predict, entity_requests[0], WARMUP)
            gateways.append(("base", "base_entity", base, base_predict))
        for r in range(ROUNDS):
            lat["direct"] += _latencies(direct, payload, LATENCY_CALLS)
            for inline, entity, call, by_entity in gateways if r % 2 == 0 else gateways[::-1]:
                lat[inline] += _latencies(call, payload, LATENCY_CALLS)
                for request in entity_requests[r * LATENCY_CALLS : (r + 1) * LATENCY_CALLS]:
                    started = time.perf_counter()
                    by_entity(request)
                    lat[entity].append(time.perf_counter() - started)
            lat["floor"] += _latencies(floor, payload, LATENCY_CALLS)
            lat["floor_entity"] += _latencies(floor_predict, floor_request, LATENCY_CALLS)
        for ch in (*channels, business_ch, *base_ch):
            ch.close()

        rps: dict[str, list[float]] = {"direct": [], "gateway": [], "floor": [], "base": []}
        rps_targets = [("gateway", gateway_url)] + ([("base", base_url)] if tree else [])
        for r in range(RPS_ROUNDS):
            rps["direct"].append(asyncio.run(_rps(direct_url, payload, RPS_SECONDS)))
            for name, url in rps_targets if r % 2 == 0 else rps_targets[::-1]:
                rps[name].append(asyncio.run(_rps(url, payload, RPS_SECONDS)))
            rps["floor"].append(asyncio.run(_rps(floor_url, payload, RPS_SECONDS)))

        pa = {
            "direct_c1": _perf_analyzer(direct_url, 1, logs / "pa-direct-c1.csv"),
            "gateway_c1": _perf_analyzer(gateway_url, 1, logs / "pa-gateway-c1.csv"),
            "direct_c8": _perf_analyzer(direct_url, CONCURRENCY, logs / "pa-direct-c8.csv"),
            "gateway_c8": _perf_analyzer(gateway_url, CONCURRENCY, logs / "pa-gateway-c8.csv"),
        }
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        triton.stop()

    d50, d99 = _pct(lat["direct"], 50), _pct(lat["direct"], 99)
    figures: list[Figure] = []
    for prefix, inline, entity, where in [
        ("gateway", "gateway", "entity", ""),
        ("gateway_baseline", "base", "base_entity", tree),
    ]:
        if not lat[inline]:
            continue
        tag = f" ({where})" if where else ""
        figures += [
            Figure(f"{prefix}.inline.p50_ms", _pct(lat[inline], 50), f"ms{tag}", "triton.direct.p50_ms", d50),
            Figure(f"{prefix}.inline.p99_ms", _pct(lat[inline], 99), f"ms{tag}", "triton.direct.p99_ms", d99),
            Figure(
                f"{prefix}.entity.p50_ms",
                _pct(lat[entity], 50),
                f"ms ({FEATURE_NOTE}){tag}",
                "triton.direct.p50_ms",
                d50,
            ),
            Figure(
                f"{prefix}.entity.p99_ms",
                _pct(lat[entity], 99),
                f"ms ({FEATURE_NOTE}){tag}",
                "triton.direct.p99_ms",
                d99,
            ),
            Figure(
                f"{prefix}.inline.rps_c8",
                float(np.mean(rps[inline])),
                f"req/s{tag}",
                "triton.direct.rps_c8",
                float(np.mean(rps["direct"])),
            ),
        ]
    figures += [
        Figure(
            "floor.inline.p50_ms", _pct(lat["floor"], 50), f"ms ({FLOOR_NOTE})", "triton.direct.p50_ms", d50
        ),
        Figure(
            "floor.inline.p99_ms", _pct(lat["floor"], 99), f"ms ({FLOOR_NOTE})", "triton.direct.p99_ms", d99
        ),
        Figure(
            "floor.entity.p99_ms",
            _pct(lat["floor_entity"], 99),
            f"ms ({FLOOR_NOTE})",
            "triton.direct.p99_ms",
            d99,
        ),
        Figure(
            "floor.inline.rps_c8",
            float(np.mean(rps["floor"])),
            f"req/s ({FLOOR_NOTE})",
            "triton.direct.rps_c8",
            float(np.mean(rps["direct"])),
        ),
    ]
    c1, d1, c8, d8 = pa["gateway_c1"], pa["direct_c1"], pa["gateway_c8"], pa["direct_c8"]
    if c1 and d1:
        figures += [
            Figure("perf_analyzer.p50_ms", c1["p50_ms"], "ms", "perf_analyzer.triton.p50_ms", d1["p50_ms"]),
            Figure("perf_analyzer.p99_ms", c1["p99_ms"], "ms", "perf_analyzer.triton.p99_ms", d1["p99_ms"]),
        ]
    if c8 and d8:
        figures.append(
            Figure("perf_analyzer.rps_c8", c8["rps"], "req/s", "perf_analyzer.triton.rps_c8", d8["rps"])
        )
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "stub-featurestore":
        serve_stub_feature_store(int(sys.argv[2]))
    elif len(sys.argv) == 5 and sys.argv[1] == "passthrough":
        serve_passthrough(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        from aif.infra import ensure_kafka
        from tests.bench.report import render

        kafka = ensure_kafka()
        try:
            print(render(measure_gateway(kafka.bootstrap_servers)))
        finally:
            kafka.stop()
