"""artifact.load_s: a version loaded into Triton through its API with the registry's bundle,
against the same version loaded from Triton's own repository folder, same Triton, same run.

The value is the gateway's whole path for one new version (``RegistryBundles.plan``: the
serving bundle over gRPC from a registry, each file downloaded and verified by its digest,
with a cold cache; then Triton's load call carrying the config and the files), timed until
Triton answers that the version is ready. The baseline is the load the factory did before
the registry stopped writing Triton's folder: the entry already in Triton's repository
(written there, untimed, by the registry's exporter) and a load call with the config only.
Both load the same TorchScript model under the same config into the same Triton, as two
model names; rounds alternate (unloading in between), after one warm-up of each, and the
median of each is reported.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from pathlib import Path

import grpc

from aifactory.registry.v1 import registry_service_pb2_grpc
from libs.usecase import load_default
from services.gateway.bundles import RegistryBundles
from services.gateway.triton import Triton
from services.registry.artifacts import FileArtifactStore
from services.registry.core import Registry, utcnow
from services.registry.domain import NewVersion
from services.registry.export import TritonExporter
from services.registry.runs import RunTracker
from services.registry.servicer import RegistryServicer
from services.registry.store import open_store
from tests.bench.report import Figure
from tests.gateway_support import control_key, own_triton, torchscript
from tests.unit.registry.kit import verdict

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 5
TARGET = 1.5


async def _unload(triton: Triton, model: str) -> None:
    await triton.unload(model)
    deadline = time.monotonic() + 60
    while await triton.ready_versions(model):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{model} still loaded 60 s after its unload")
        await asyncio.sleep(0.05)


async def _measure(work: Path, triton_url: str, repository: Path) -> tuple[list[float], list[float]]:
    usecases = load_default()
    uc = usecases["loan_approval"]
    store = open_store(f"sqlite:///{work / 'registry.db'}")
    blobs = FileArtifactStore(work / "artifacts")
    exporter = TritonExporter(work / "exports", blobs)
    registry = Registry(store, blobs, usecases, exporter, clock=utcnow)
    suffix = uuid.uuid4().hex[:6]
    api_name, repo_name = f"bench_api_{suffix}", f"bench_repo_{suffix}"
    content = torchscript(uc, seed=5)
    api_version = registry.register_version(NewVersion(uc.name, api_name), None, artifact=content)
    repo_version = registry.register_version(NewVersion(uc.name, repo_name), None, artifact=content)
    # Only an approved version is served or exported.
    for version in (api_version, repo_version):
        registry.apply_evaluation(verdict(version.key, True))
    repo_version = registry.get_version(repo_version.key)
    # The baseline's premise: the entry sits in Triton's own folder before the load.
    exporter.export(repo_version, repository)
    server = grpc.aio.server()
    registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(registry, RunTracker(store, usecases, utcnow), blobs), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    triton = Triton(triton_url, control_key=control_key(triton_url))
    repo_config = exporter.bundle(repo_version).config
    policy = {"specific": {"versions": [1]}}

    async def through_api() -> float:
        started = time.perf_counter()
        plan = await RegistryBundles(channel).plan(uc.name, api_name, frozenset({1}))
        await triton.load(api_name, {**plan.config, "version_policy": policy}, 300, files=plan.files)
        took = time.perf_counter() - started
        await _unload(triton, api_name)
        return took

    async def from_folder() -> float:
        started = time.perf_counter()
        await triton.load(repo_name, {**repo_config, "version_policy": policy}, 300)
        took = time.perf_counter() - started
        await _unload(triton, repo_name)
        return took

    api: list[float] = []
    folder: list[float] = []
    try:
        await through_api()  # warm-up: the first python-backend stub of a run starts slower
        await from_folder()
        for i in range(ROUNDS):
            order = (through_api, from_folder) if i % 2 == 0 else (from_folder, through_api)
            for run in order:
                (api if run is through_api else folder).append(await run())
    finally:
        await triton.close()
        await channel.close()
        await server.stop(None)
        store.close()
    return api, folder


def measure_artifact() -> list[Figure]:
    import shutil

    triton = own_triton("triton-artifact-bench", 28531)
    work = ROOT / "build" / "artifact-bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        api, folder = asyncio.run(_measure(work, triton.grpc_url, triton.model_repository))
    finally:
        triton.stop()
        # Only this bench's own Triton folder: it wrote the baseline's entries there.
        shutil.rmtree(triton.model_repository, ignore_errors=True)
    value, baseline = statistics.median(api), statistics.median(folder)
    ratio = value / baseline
    return [
        Figure(
            "artifact.load_s",
            value,
            "s",
            "triton.repository_load_s",
            baseline,
            note=(
                f"{len(api)} rounds, medians (API {min(api):.2f}-{max(api):.2f} s, folder "
                f"{min(folder):.2f}-{max(folder):.2f} s); ratio {ratio:.2f}, target <= {TARGET}"
                + ("" if ratio <= TARGET else ": MISSED")
            ),
        )
    ]
