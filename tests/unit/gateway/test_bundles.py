"""Serving bundles from the registry: every file verified by its digest, cached by version,
``model.py`` fetched once for all versions, the cache following what Triton serves."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from aifactory.registry.v1 import registry_service_pb2 as pb
from libs.artifacts import DigestMismatch
from libs.errors import StatusError
from services.gateway.bundles import RegistryBundles
from tests.unit.gateway.test_models import FakeRpcError

CODE = b"# model.py\n"


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class FakeRegistry:
    """GetServingBundle and DownloadArtifact as the registry answers them."""

    def __init__(self) -> None:
        self.blobs = {sha(CODE): CODE}
        self.weights: dict[int, bytes] = {}
        self.downloads: list[str] = []
        self.damaged: set[str] = set()

    def add(self, version: int) -> None:
        self.weights[version] = f"weights v{version}".encode()
        self.blobs[sha(self.weights[version])] = self.weights[version]

    async def GetServingBundle(self, request: pb.GetServingBundleRequest, timeout: float) -> Any:  # noqa: N802
        version = request.ref.version
        if version not in self.weights:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"no version {version}")
        config = {"name": request.ref.model_name, "max_batch_size": 8, "kind": request.instance_kind}
        weights = self.weights[version]
        return pb.GetServingBundleResponse(
            ref=request.ref,
            triton_model_name=request.ref.model_name,
            config_json=json.dumps(config),
            files=[
                pb.ServingFile(path="model.py", sha256=sha(CODE), size_bytes=len(CODE)),
                pb.ServingFile(path="model.pt", sha256=sha(weights), size_bytes=len(weights)),
            ],
        )

    def DownloadArtifact(self, request: pb.DownloadArtifactRequest, **_: Any) -> AsyncIterator[Any]:  # noqa: N802
        self.downloads.append(request.sha256)
        content = self.blobs[request.sha256]
        if request.sha256 in self.damaged:
            content = b"flipped" + content[7:]

        async def stream() -> AsyncIterator[Any]:
            yield pb.DownloadArtifactResponse(chunk=content[:4], size_bytes=len(content))
            yield pb.DownloadArtifactResponse(chunk=content[4:])

        return stream()


def bundles(registry: FakeRegistry) -> RegistryBundles:
    source = RegistryBundles(grpc.aio.insecure_channel("127.0.0.1:1"), instance_kind="gpu")
    source._stub = registry  # type: ignore[assignment]
    return source


async def test_plan_carries_every_version_files_and_fetches_each_blob_once() -> None:
    registry = FakeRegistry()
    registry.add(1)
    registry.add(2)
    source = bundles(registry)
    plan = await source.plan("uc", "uc", frozenset({1, 2}))
    assert plan.config == {"name": "uc", "max_batch_size": 8, "kind": "gpu"}
    assert plan.files == {
        "file:1/model.py": CODE,
        "file:1/model.pt": b"weights v1",
        "file:2/model.py": CODE,
        "file:2/model.pt": b"weights v2",
    }
    assert sorted(registry.downloads) == sorted({sha(CODE), sha(b"weights v1"), sha(b"weights v2")})
    # Cached: a reload (Triton restarted) needs no registry.
    await source.plan("uc", "uc", frozenset({1, 2}))
    assert len(registry.downloads) == 3 and source.downloads == 3
    source.retain("uc", frozenset({2}))
    await source.plan("uc", "uc", frozenset({2}))
    assert len(registry.downloads) == 3
    await source.plan("uc", "uc", frozenset({1, 2}))
    assert registry.downloads[3:] == [sha(b"weights v1")]  # dropped, fetched again; model.py kept


async def test_a_blob_damaged_on_the_way_is_refused_and_not_cached() -> None:
    registry = FakeRegistry()
    registry.add(1)
    registry.damaged.add(sha(b"weights v1"))
    source = bundles(registry)
    with pytest.raises(DigestMismatch) as info:
        await source.plan("uc", "uc", frozenset({1}))
    assert info.value.code is grpc.StatusCode.DATA_LOSS and info.value.expected == sha(b"weights v1")
    registry.damaged.clear()
    plan = await source.plan("uc", "uc", frozenset({1}))
    assert plan.files is not None and plan.files["file:1/model.pt"] == b"weights v1"


async def test_registry_refusals_keep_their_status() -> None:
    source = bundles(FakeRegistry())
    with pytest.raises(StatusError) as info:
        await source.plan("uc", "uc", frozenset({7}))
    assert info.value.code is grpc.StatusCode.NOT_FOUND and "v7" in info.value.message
