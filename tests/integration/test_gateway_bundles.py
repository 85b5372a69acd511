"""Models into Triton through its API, with no folder shared: a real registry (its gRPC
servicer, store and artifact store) hands out serving bundles, the gateway's model manager
fetches them (``RegistryBundles``, every blob verified by its digest) and loads them into a
real Triton with the config and files in the load call. It serves v1, switches to v2 under
load with no failed request (one load carrying both versions' files, then v2's only),
reloads after Triton lost the model from its cache with the registry gone, and Triton's
repository folder holds nothing at the end: nobody but Triton writes it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from aifactory.registry.v1 import registry_service_pb2_grpc
from libs.usecase import load_default
from services.gateway.bundles import RegistryBundles
from services.gateway.directory import AliasBook, AliasState
from services.gateway.inputs import InputSchema
from services.gateway.models import ModelManager
from services.gateway.triton import Triton, encode_request
from services.registry.artifacts import FileArtifactStore
from services.registry.core import Registry, utcnow
from services.registry.domain import NewVersion
from services.registry.export import TritonExporter
from services.registry.runs import RunTracker
from services.registry.servicer import RegistryServicer
from services.registry.store import open_store
from tests.gateway_support import own_triton, torchscript
from tests.unit.registry.kit import verdict

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

UC = "loan_approval"


@pytest.fixture(scope="module")
def triton() -> Iterator:  # type: ignore[type-arg]
    handle = own_triton("triton-bundles", 28541)
    yield handle
    handle.stop()


@dataclass
class Registered:
    server: grpc.aio.Server
    channel: grpc.aio.Channel
    exports: Path


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registered]:
    """A registry with versions 1 and 2 of loan_approval (2 leans further to class 1), both
    passed evaluation (a bundle is only given for an approved version)."""
    usecases = load_default()
    uc = usecases[UC]
    store = open_store(f"sqlite:///{tmp_path / 'registry.db'}")
    blobs = FileArtifactStore(tmp_path / "artifacts")
    core = Registry(store, blobs, usecases, TritonExporter(tmp_path / "exports", blobs), clock=utcnow)
    for version, bias in ((1, 0.0), (2, 2.0)):
        content = torchscript(uc, seed=version, bias=bias)
        version = core.register_version(NewVersion(UC, UC), None, artifact=content)
        core.apply_evaluation(verdict(version.key, True))  # only an approved version is served
    server = grpc.aio.server()
    registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(core, RunTracker(store, usecases, utcnow), blobs), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Registered(server, channel, tmp_path / "exports")
    finally:
        await channel.close()
        await server.stop(None)
        store.close()


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


async def test_versions_load_through_the_api_and_switch_with_no_failed_request(
    triton, registry: Registered
) -> None:  # type: ignore[no-untyped-def]
    before = _entries(triton.model_repository)
    usecases = {UC: load_default()[UC]}
    schema = InputSchema(usecases[UC])
    client = Triton(triton.grpc_url, infer_timeout_s=10, control_key=triton.control_key)
    book = AliasBook()
    source = RegistryBundles(registry.channel)
    models = ModelManager(usecases, book, client, source, warmup_requests=2, retire_grace_s=1.0)
    row = np.zeros((1, schema.width), dtype=np.float32).tobytes()
    try:
        book.apply(AliasState(UC, "champion", 1, 1))
        assert await models.wait_idle(120)
        assert await client.ready_versions(UC) == {1}
        assert source.downloads == 2  # model.py and v1's weights, each verified

        served: Counter[str] = Counter()
        failures: list[str] = []
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                _, routing = models.routing(UC)
                version = routing.champion
                models.inflight[(UC, version)] += 1
                try:
                    raw = await client.infer_raw(encode_request(UC, str(version), row, 1, schema.width), UC)
                    served[str(version)] += 1
                    assert raw
                except Exception as exc:  # noqa: BLE001 - every failure is the test's finding
                    failures.append(f"v{version}: {exc}")
                finally:
                    models.inflight[(UC, version)] -= 1
                await asyncio.sleep(0.005)

        runner = asyncio.create_task(load())
        await asyncio.sleep(0.3)
        book.apply(AliasState(UC, "champion", 2, 2))
        assert await models.wait_idle(180)
        await asyncio.sleep(0.3)
        stop.set()
        await runner
        assert failures == []
        assert served["1"] > 0 and served["2"] > 0
        assert models.routing(UC)[1].versions == {2}
        assert await client.ready_versions(UC) == {2}
        assert source.downloads == 3  # model.py is one blob for both versions

        # Triton lost the model (say it restarted): the manager loads it again from its
        # cache, with the registry gone.
        await registry.server.stop(None)
        await client.unload(UC)
        for _ in range(200):
            if not await client.ready_versions(UC):
                break
            await asyncio.sleep(0.05)
        await models.reload_all()
        assert await client.ready_versions(UC) == {2}
        assert source.downloads == 3
    finally:
        await models.close()
        try:
            await client.unload(UC)
        finally:
            await client.close()
    # Nobody but Triton writes Triton's repository; the registry wrote no export either.
    assert _entries(triton.model_repository) == before == []
    assert not registry.exports.exists()
