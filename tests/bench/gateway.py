"""The serving gateway against Triton called directly, on the same model and the same client.

Everything runs as its own process on this machine: a Triton of the bench's own
(loan_approval version 1, exported with the registry's exporter), the gateway
(``python -m services.gateway``: auth off, prediction log on, to a bench topic), and for
predictions by entity id the real feature store (``python -m services.featurestore``,
Feast online on SQLite, and a second one on Redis, each with its own gateway), loaded
with ``ENTITIES`` applicants' features before the rounds.

Clients (the bench process): a blocking gRPC stub sending one pre-encoded
``ModelInferRequest`` (1 row) for latency at concurrency 1; a grpc.aio client with 8
concurrent callers for throughput; the business ``Predict`` by entity id for the
entity figure. Gateway and Triton runs alternate in rounds, so both see the same
background load. perf_analyzer (tritonclient 2.41's binary) loads both too.

Figures, each with Triton direct as its baseline:
- gateway.inline.p50_ms / p99_ms: OIP ModelInfer, features inline, concurrency 1
- gateway.entity.{sqlite,redis}.p50_ms / p99_ms: business Predict by entity id (features
  read online from the feature store on that backend), c1; baseline: the same features read
  in the bench process with the Feast SDK (``FeatureStore.get_online_features`` on the
  feature store's own Feast repo) and Triton called directly with them
- gateway.inline.rps_c8: OIP ModelInfer throughput at concurrency 8
- perf_analyzer.p50_ms (c1) and perf_analyzer.rps_c8
- floor.*: the same measurements through a bare Python hop (``passthrough`` below: a
  grpc.aio server on uvloop that forwards the request bytes to Triton and returns its
  bytes; for the entity figure it first calls the SQLite feature store with a fixed
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
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import grpc
import numpy as np

from tests.bench.procs import spawn_gateway
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
# perf_analyzer: requests per measurement window, stability (%) tried in turn, trials.
PA_REQUESTS = 3000
PA_STABILITY = ("50", "100")
PA_TRIALS = 8
BACKENDS = ("sqlite", "redis")
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
    last: Exception | None = None
    while True:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench: {what} not ready after {timeout:.0f}s (last: {last!r:.500})")
        time.sleep(0.2)


# -- the baseline for entity figures: Feast SDK read + Triton direct ----------------------


class FeastThenTriton:
    """What an app without the gateway would do: read the entity's features with the Feast
    SDK from the feature store's own repo, then call Triton with them."""

    def __init__(self, repo: Path, infer) -> None:  # type: ignore[no-untyped-def]
        from feast import FeatureStore
        from tritonclient.grpc import service_pb2

        from libs.usecase import load_default

        uc = load_default()["loan_approval"]
        self._store = FeatureStore(repo_path=str(repo))
        self._columns = uc.model_inputs()
        self._refs = [f"loan_approval:{c}" for c in self._columns]
        self._key = uc.entity.field
        self._infer = infer
        self._pb = service_pb2

    def __call__(self, entity_id: str) -> bytes:
        values = self._store.get_online_features(
            features=self._refs, entity_rows=[{self._key: entity_id}]
        ).to_dict()
        row = np.array(
            [[np.nan if values[c][0] is None else values[c][0] for c in self._columns]], dtype=np.float32
        )
        req = self._pb.ModelInferRequest(model_name="loan_approval")
        req.inputs.add(name="INPUT", datatype="FP32", shape=list(row.shape))
        req.raw_input_contents.append(row.tobytes())
        return self._infer(req.SerializeToString(), timeout=5)  # type: ignore[no-any-return]


def serve_passthrough(port: int, triton_url: str, feature_store_url: str, entity_id: str) -> None:
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
            use_case="loan_approval", entity_ids=[entity_id]
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


def latencies(call, payload: bytes, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds of each of ``n`` blocking calls, one after the other."""
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call(payload)
        out.append(time.perf_counter() - started)
    return out


def paired_latencies(calls: Mapping[str, Callable[[], object]], n: int) -> dict[str, list[float]]:
    """Seconds of ``n`` calls of each variant, taken in turns (one call of each, the order
    rotating every turn): what the machine does meanwhile (another tenant, a clock change,
    a background flush) falls on every variant alike. Blocks of consecutive calls per
    variant, even alternated, let a few seconds of background load land on one variant
    only, which moved a p50 by more than the 0.15 ms a target allows."""
    keys = list(calls)
    out: dict[str, list[float]] = {k: [] for k in keys}
    for i in range(n):
        shift = i % len(keys)
        for key in keys[shift:] + keys[:shift]:
            started = time.perf_counter()
            calls[key]()
            out[key].append(time.perf_counter() - started)
    return out


async def calls_per_s(
    target: str,
    payload: bytes,
    seconds: float,
    *,
    method: str = "/inference.GRPCInferenceService/ModelInfer",
    warmup_s: float = 0.5,
) -> float:
    """Calls per second of ``method`` with ``payload`` at CONCURRENCY, after a warm-up."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(method)
        done = 0
        loop_stop = time.perf_counter() + warmup_s

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


# Length of one slice of alternating_calls_per_s.
SLICE_S = 0.25


async def alternating_calls_per_s(
    targets: Mapping[str, str],
    payload: bytes,
    seconds: float,
    *,
    method: str,
    slice_s: float = SLICE_S,
    warmup_s: float = 0.5,
) -> dict[str, list[float]]:
    """Calls per second at CONCURRENCY to each server of ``targets`` (name → address), the
    load moved from one to the next every ``slice_s`` (the order rotating every turn), for
    about ``seconds`` per server: the rate of each slice, per name.

    This machine's speed moves by some ±10 % over a second or two (other tenants), so
    windows of a few seconds per server, even alternated, let a slow spell land on one
    variant: a 2-s window's ratio between two identical gateways ran from 0.82 to 1.17.
    Slices of a quarter second put both sides of every spell on every server (the same
    identical pair, its ratio over 4-s blocks: a standard deviation of 0.03, against 0.055
    with 1-s slices and 0.058 with 2-s ones).
    A call counts for its slice only if it starts and ends in it: the CONCURRENCY calls in
    flight when a slice ends count for no one, alike on every server."""
    keys = list(targets)
    channels = {k: grpc.aio.insecure_channel(targets[k]) for k in keys}
    try:
        calls = {k: channels[k].unary_unary(method) for k in keys}
        for key in keys:  # connected and warm before the first slice
            stop_at = time.perf_counter() + warmup_s

            async def warm(
                call: Callable[..., Awaitable[object]] = calls[key], until: float = stop_at
            ) -> None:
                while time.perf_counter() < until:
                    await call(payload)

            await asyncio.gather(*(warm() for _ in range(CONCURRENCY)))
        current = {"slice": 0, "key": keys[0], "done": 0}
        running = True

        async def worker() -> None:
            while running:
                slice_no, key = current["slice"], current["key"]
                await calls[key](payload)  # type: ignore[index]
                if current["slice"] == slice_no:
                    current["done"] += 1  # type: ignore[operator]

        workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
        rates: dict[str, list[float]] = {k: [] for k in keys}
        try:
            for turn in range(max(1, round(seconds / slice_s))):
                shift = turn % len(keys)
                for key in keys[shift:] + keys[:shift]:
                    current.update(slice=current["slice"] + 1, key=key, done=0)  # type: ignore[operator]
                    started = time.perf_counter()
                    await asyncio.sleep(slice_s)
                    rates[key].append(current["done"] / (time.perf_counter() - started))  # type: ignore[operator]
        finally:
            running = False
            await asyncio.gather(*workers, return_exceptions=True)
        return rates
    finally:
        for channel in channels.values():
            await channel.close()


def block_ratios(value: Sequence[float], baseline: Sequence[float], block: int) -> list[float]:
    """Ratios of ``value`` to ``baseline`` (slice rates of the same turns) over consecutive
    blocks of ``block`` turns: how much the whole figure could move."""
    n = min(len(value), len(baseline))
    return [
        float(np.mean(value[i : i + block]) / np.mean(baseline[i : i + block]))
        for i in range(0, n - block + 1, block)
    ] or [float(np.mean(value[:n]) / np.mean(baseline[:n]))]


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
    for stability in PA_STABILITY:
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
            str(PA_REQUESTS),
            "-s",
            stability,
            "--max-trials",
            str(PA_TRIALS),
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


def _entity_features(bootstrap: str, logs: Path, redis_url: str) -> dict[str, object]:
    """One feature store per backend, started side by side and loaded with ENTITIES
    applicants; returns them by backend (call ``.stop()`` on each) and the entity ids under
    ``"ids"``."""
    from tests.bench.features import FeatureStoreProcess, examples, load_entities

    rows = examples(ENTITIES * 3, seed=3, applicants=ENTITIES)
    for b in BACKENDS:  # a Feast repo, data and log of this run's own
        shutil.rmtree(logs / f"fs-{b}", ignore_errors=True)
    stores = {
        b: FeatureStoreProcess(bootstrap, logs / f"fs-{b}", online_store=b, redis_url=redis_url)
        for b in BACKENDS
    }

    async def ready() -> None:
        await asyncio.gather(*(fs.create_topics(bootstrap) for fs in stores.values()))
        await asyncio.gather(*(asyncio.to_thread(fs.start) for fs in stores.values()))
        await asyncio.gather(*(load_entities(bootstrap, fs, rows) for fs in stores.values()))

    try:
        asyncio.run(ready())
    except BaseException:
        for fs in stores.values():
            fs.stop()
        raise
    return {**stores, "ids": sorted({e.entity_id for e in rows})}


def measure_gateway(bootstrap: str) -> list[Figure]:
    from aif.infra import ensure_redis
    from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
    from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
    from libs.usecase import load_default
    from tests.bench.features import FeatureStoreProcess
    from tests.gateway_support import export_version, own_triton

    # Unrestricted: perf_analyzer reads the model config and cannot send gRPC headers.
    triton = own_triton("triton-bench", 28491, restricted=False)
    redis = ensure_redis()
    procs: list[subprocess.Popen[bytes]] = []
    logs = ROOT / "build" / "gateway-bench"
    logs.mkdir(parents=True, exist_ok=True)
    stores: dict[str, object] = {}
    try:
        export_version(triton.model_repository, load_default()["loan_approval"], 1)
        stores = _entity_features(bootstrap, logs, redis.url)
        ids: list[str] = stores["ids"]  # type: ignore[assignment]
        fs = {b: stores[b] for b in BACKENDS}
        sqlite_fs: FeatureStoreProcess = fs["sqlite"]  # type: ignore[assignment]
        ports = {b: (_free_port(), _free_port()) for b in BACKENDS}  # (gRPC, OIP) of its gateway
        grpc_port, oip_port = ports["sqlite"]
        env = dict(os.environ)
        env.update(
            {
                "AIF_GATEWAY_AUTH_MODE": "off",
                "AIF_GATEWAY_GRPC_PORT": str(grpc_port),
                "AIF_GATEWAY_OIP_PORT": str(oip_port),
                "AIF_GATEWAY_METRICS_PORT": "0",
                "AIF_GATEWAY_TRITON_URL": triton.grpc_url,
                "AIF_GATEWAY_TRITON_CONTROL_KEY": triton.control_key,
                "AIF_GATEWAY_REGISTRY_TARGET": "",
                "AIF_GATEWAY_STATIC_ALIASES": "loan_approval:champion=1",
                "AIF_GATEWAY_USE_CASES": "loan_approval",
                "AIF_GATEWAY_FEATURESTORE_TARGET": sqlite_fs.target,
                "AIF_GATEWAY_KAFKA_BOOTSTRAP": bootstrap,
                "AIF_GATEWAY_PREDICTIONS_TOPIC": f"bench.gateway.predictions.{uuid.uuid4().hex[:8]}",
                "AIF_GATEWAY_LOG_LEVEL": "WARNING",
            }
        )
        for backend in BACKENDS:
            g, o = ports[backend]
            variant = {
                **env,
                "AIF_GATEWAY_GRPC_PORT": str(g),
                "AIF_GATEWAY_OIP_PORT": str(o),
                "AIF_GATEWAY_FEATURESTORE_TARGET": fs[backend].target,  # type: ignore[attr-defined]
                "AIF_GATEWAY_PREDICTIONS_TOPIC": f"bench.gateway.predictions.{uuid.uuid4().hex[:8]}",
            }
            procs.append(spawn_gateway(variant, logs / f"gateway-{backend}.log"))
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
            procs.append(spawn_gateway(base_env, logs / "gateway-baseline.log", cwd=Path(tree)))
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
                    sqlite_fs.target,
                    ids[0],
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
        business_ch = {b: grpc.insecure_channel(f"127.0.0.1:{ports[b][0]}") for b in BACKENDS}
        predicts = {b: gw_grpc.GatewayServiceStub(business_ch[b]).Predict for b in BACKENDS}
        predict = predicts["sqlite"]
        floor_predict = channels[2].unary_unary("/aifactory.gateway.v1.GatewayService/Predict")
        feast = {b: FeastThenTriton(fs[b].repo, direct) for b in BACKENDS}  # type: ignore[attr-defined]
        _wait("triton model", lambda: direct(payload, timeout=5) is not None)
        _wait("gateway", lambda: gateway(payload, timeout=5) is not None)
        for backend in BACKENDS:
            _wait(
                f"gateway by entity ({backend})",
                lambda b=backend: (  # type: ignore[misc]
                    predicts[b](gw_pb.PredictRequest(use_case="loan_approval", entity_id=ids[0]), timeout=5)
                    is not None
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
                    base_predict(gw_pb.PredictRequest(use_case="loan_approval", entity_id=ids[0]), timeout=5)
                    is not None
                ),
            )

        lat: dict[str, list[float]] = {
            k: []
            for k in (
                "direct",
                "gateway",
                "entity",
                "floor",
                "floor_entity",
                "base",
                "base_entity",
                *(f"entity_{b}" for b in BACKENDS),
                *(f"feast_{b}" for b in BACKENDS),
            )
        }
        order = [ids[i % len(ids)] for i in range(ROUNDS * LATENCY_CALLS)]
        entity_requests = [gw_pb.PredictRequest(use_case="loan_approval", entity_id=e) for e in order]
        floor_request = entity_requests[0].SerializeToString()
        for call in (direct, gateway, floor):
            latencies(call, payload, WARMUP)
        latencies(floor_predict, floor_request, WARMUP)
        for backend in BACKENDS:  # the same warm-up for each gateway and for its baseline
            for e in order[:WARMUP]:
                predicts[backend](gw_pb.PredictRequest(use_case="loan_approval", entity_id=e))
                feast[backend](e)
        # The gateways under test, in the order of a round: this tree's, then the baseline's.
        gateways = [("gateway", "entity", gateway, predict)]
        if tree:
            latencies(base, payload, WARMUP)
            latencies(base_predict, entity_requests[0], WARMUP)
            gateways.append(("base", "base_entity", base, base_predict))

        def timed(key: str, fn, items) -> None:  # type: ignore[no-untyped-def]
            for item in items:
                started = time.perf_counter()
                fn(item)
                lat[key].append(time.perf_counter() - started)

        for r in range(ROUNDS):
            calls = slice(r * LATENCY_CALLS, (r + 1) * LATENCY_CALLS)
            lat["direct"] += latencies(direct, payload, LATENCY_CALLS)
            for inline, entity, call, by_entity in gateways if r % 2 == 0 else gateways[::-1]:
                lat[inline] += latencies(call, payload, LATENCY_CALLS)
                if tree:  # by entity, this tree's against the other's in the same rounds
                    timed(entity, by_entity, entity_requests[calls])
            # Each backend: its gateway and its Feast SDK + Triton baseline on the same entities,
            # alternating which goes first.
            for backend in BACKENDS:
                pair = [
                    (f"entity_{backend}", predicts[backend], entity_requests[calls]),
                    (f"feast_{backend}", feast[backend], order[calls]),
                ]
                for key, fn, items in pair if r % 2 == 0 else pair[::-1]:
                    timed(key, fn, items)
            lat["floor"] += latencies(floor, payload, LATENCY_CALLS)
            lat["floor_entity"] += latencies(floor_predict, floor_request, LATENCY_CALLS)
        for ch in (*channels, *business_ch.values(), *base_ch):
            ch.close()

        rps: dict[str, list[float]] = {"direct": [], "gateway": [], "floor": [], "base": []}
        rps_targets = [("gateway", gateway_url)] + ([("base", base_url)] if tree else [])
        for r in range(RPS_ROUNDS):
            rps["direct"].append(asyncio.run(calls_per_s(direct_url, payload, RPS_SECONDS)))
            for name, url in rps_targets if r % 2 == 0 else rps_targets[::-1]:
                rps[name].append(asyncio.run(calls_per_s(url, payload, RPS_SECONDS)))
            rps["floor"].append(asyncio.run(calls_per_s(floor_url, payload, RPS_SECONDS)))

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
        for backend in BACKENDS:
            if backend in stores:
                stores[backend].stop()  # type: ignore[attr-defined]
        triton.stop()
        redis.stop()  # only if this run started it

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
        ]
        if prefix == "gateway":
            for backend in BACKENDS:
                ours, theirs = lat[f"entity_{backend}"], lat[f"feast_{backend}"]
                for q in (50, 99):
                    figures.append(
                        Figure(
                            f"gateway.entity.{backend}.p{q}_ms",
                            _pct(ours, q),
                            f"ms (feature store on Feast/{backend})",
                            f"feast_sdk+triton.{backend}.p{q}_ms",
                            _pct(theirs, q),
                        )
                    )
        else:  # the other tree's gateway on the SQLite feature store, against the same baseline
            for q in (50, 99):
                figures.append(
                    Figure(
                        f"{prefix}.entity.sqlite.p{q}_ms",
                        _pct(lat[entity], q),
                        f"ms (feature store on Feast/sqlite){tag}",
                        f"feast_sdk+triton.sqlite.p{q}_ms",
                        _pct(lat["feast_sqlite"], q),
                    )
                )
        figures.append(
            Figure(
                f"{prefix}.inline.rps_c8",
                float(np.mean(rps[inline])),
                f"req/s{tag}",
                "triton.direct.rps_c8",
                float(np.mean(rps["direct"])),
            )
        )
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
            f"ms ({FLOOR_NOTE}, feature store on Feast/sqlite)",
            "feast_sdk+triton.sqlite.p99_ms",
            _pct(lat["feast_sqlite"], 99),
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
    figures += [
        Figure(
            "perf_analyzer.p50_ms",
            c1["p50_ms"] if c1 else None,
            "ms",
            "perf_analyzer.triton.p50_ms",
            d1["p50_ms"] if d1 else None,
            note="" if c1 and d1 else "perf_analyzer found no stable measurement or did not run",
            failed=not (c1 and d1),
        ),
        Figure(
            "perf_analyzer.p99_ms",
            c1["p99_ms"] if c1 else None,
            "ms",
            "perf_analyzer.triton.p99_ms",
            d1["p99_ms"] if d1 else None,
            note="" if c1 and d1 else "perf_analyzer found no stable measurement or did not run",
            failed=not (c1 and d1),
        ),
        Figure(
            "perf_analyzer.rps_c8",
            c8["rps"] if c8 else None,
            "req/s",
            "perf_analyzer.triton.rps_c8",
            d8["rps"] if d8 else None,
            note="" if c8 and d8 else "perf_analyzer found no stable measurement or did not run",
            failed=not (c8 and d8),
        ),
    ]
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "passthrough":
        serve_passthrough(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        from aif.infra import ensure_kafka
        from tests.bench.report import render

        kafka = ensure_kafka()
        try:
            print(render(measure_gateway(kafka.bootstrap_servers)))
        finally:
            kafka.stop()
