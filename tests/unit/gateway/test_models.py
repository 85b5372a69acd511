"""The model manager against a fake Triton: load old+new (with the files of both when they
come from the registry), warm, switch, retire, unload."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from libs.errors import NotFound
from libs.usecase import load_default
from services.gateway.bundles import LoadPlan
from services.gateway.directory import AliasBook, AliasState
from services.gateway.models import ModelManager

UCS = {"loan_approval": load_default()["loan_approval"]}


class FakeRpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class FakeTriton:
    def __init__(self) -> None:
        self.loaded: set[int] = set()
        self.log: list[Any] = []
        self.fail_load: set[int] = set()
        self.files: list[list[str] | None] = []  # the override files of each load call
        self.recover: list[Any] = []
        self.trouble: list[Any] = []
        self.up = True

    def on_recover(self, hook: Any) -> None:
        self.recover.append(hook)

    def on_model_trouble(self, hook: Any) -> None:
        self.trouble.append(hook)

    async def load(
        self, model: str, config: dict[str, Any], timeout: float, files: dict[str, bytes] | None = None
    ) -> None:
        versions = set(config["version_policy"]["specific"]["versions"])
        if versions & self.fail_load:
            raise FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "no such version folder")
        self.log.append(("load", sorted(versions)))
        self.files.append(None if files is None else sorted(files))
        self.loaded = versions

    async def unload(self, model: str) -> None:
        self.log.append(("unload",))
        self.loaded = set()

    async def infer_raw(self, request: bytes, model: str = "", *, checked: bool = True) -> bytes:
        from tritonclient.grpc import service_pb2

        version = int(service_pb2.ModelInferRequest.FromString(request).model_version)
        assert version in self.loaded, "warm-up before load"
        self.log.append(("warm", version))
        return b""

    async def ready_versions(self, model: str) -> set[int]:
        return set(self.loaded)

    async def model_config(self, model: str) -> dict[str, Any]:
        return {"version_policy": {"specific": {"versions": [str(v) for v in sorted(self.loaded)]}}}


class FakeSource:
    """Versions from Triton's own repository, or (``files``) with each version's files."""

    def __init__(self, files: bool = False) -> None:
        self.files = files
        self.retained: list[list[int]] = []

    async def plan(self, use_case: str, model: str, versions: frozenset[int]) -> LoadPlan:
        files = {f"file:{v}/{name}": b"x" for v in versions for name in ("model.py", "model.pt")}
        return LoadPlan({"name": model, "max_batch_size": 64}, files if self.files else None)

    def retain(self, model: str, versions: frozenset[int]) -> None:
        self.retained.append(sorted(versions))


def manager(triton: FakeTriton, book: AliasBook, source: FakeSource | None = None, **kw: Any) -> ModelManager:
    return ModelManager(
        UCS,
        book,
        triton,  # type: ignore[arg-type]
        source or FakeSource(),
        warmup_requests=1,
        retire_grace_s=0.5,
        retry_s=0.05,
        **kw,
    )


async def test_first_champion_is_loaded_warmed_and_served() -> None:
    triton, book = FakeTriton(), AliasBook()
    models = manager(triton, book)
    with pytest.raises(NotFound):
        models.routing("loan_approval")
    book.apply(AliasState("loan_approval", "champion", 1))
    await models.wait_idle()
    served, routing = models.routing("loan_approval")
    assert routing.champion == 1 and served.max_batch == 64
    assert triton.log == [("load", [1]), ("warm", 1)]
    with pytest.raises(NotFound):
        models.get("nope")


async def test_promotion_keeps_old_until_new_is_warm_then_unloads_it() -> None:
    triton, book = FakeTriton(), AliasBook()
    models = manager(triton, book)
    book.apply(AliasState("loan_approval", "champion", 1, 1))
    await models.wait_idle()
    triton.log.clear()
    seen: list[int] = []

    async def watch() -> None:  # what requests would be routed to, all along the switch
        while True:
            seen.append(models.routing("loan_approval")[1].champion)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    models.inflight[("loan_approval", 1)] += 1  # a request still on its way to v1
    book.apply(AliasState("loan_approval", "champion", 2, 2))
    await asyncio.sleep(0.05)
    assert triton.loaded == {1, 2}  # v1 not unloaded while a request is in flight
    models.inflight[("loan_approval", 1)] -= 1
    await models.wait_idle()
    watcher.cancel()
    assert triton.log == [("load", [1, 2]), ("warm", 2), ("load", [2])]
    assert seen == sorted(seen) and seen[0] == 1 and seen[-1] == 2  # one switch, never back
    assert models.routing("loan_approval")[1].versions == {2}


async def test_a_version_that_cannot_load_leaves_the_old_one_serving_and_is_retried() -> None:
    triton, book = FakeTriton(), AliasBook()
    models = manager(triton, book)
    book.apply(AliasState("loan_approval", "champion", 1, 1))
    await models.wait_idle()
    triton.fail_load = {3}
    book.apply(AliasState("loan_approval", "champion", 3, 2))
    await asyncio.sleep(0.2)
    assert models.routing("loan_approval")[1].champion == 1
    triton.fail_load = set()  # exported meanwhile
    await models.wait_idle(5)
    assert models.routing("loan_approval")[1].champion == 3 and triton.loaded == {3}


async def test_canary_loads_both_and_recovery_reloads_everything() -> None:
    triton, book = FakeTriton(), AliasBook()
    canary = {
        "loan_approval": UCS["loan_approval"].model_copy(
            update={"deployment": UCS["loan_approval"].deployment.model_copy(update={"strategy": "canary"})}
        )
    }
    models = ModelManager(canary, book, triton, FakeSource(), warmup_requests=1)  # type: ignore[arg-type]
    book.apply(AliasState("loan_approval", "champion", 1, 1))
    book.apply(AliasState("loan_approval", "challenger", 2, 1))
    await models.wait_idle()
    assert triton.loaded == {1, 2} and models.routing("loan_approval")[1].challenger == 2
    triton.loaded = set()  # Triton restarted
    triton.log.clear()
    await triton.recover[0]()
    assert triton.loaded == {1, 2} and ("warm", 1) in triton.log and ("warm", 2) in triton.log


async def test_gateway_restart_adopts_what_triton_serves_without_reloading() -> None:
    triton, book = FakeTriton(), AliasBook()
    triton.loaded = {4}
    models = manager(triton, book)
    book.apply(AliasState("loan_approval", "champion", 4))
    await models.wait_idle()
    assert triton.log == [] and models.routing("loan_approval")[1].champion == 4


async def test_lost_versions_are_loaded_again_on_model_trouble() -> None:
    triton, book = FakeTriton(), AliasBook()
    models = manager(triton, book)
    book.apply(AliasState("loan_approval", "champion", 1))
    await models.wait_idle()
    triton.loaded = set()
    await triton.trouble[0]("loan_approval")
    await models.wait_idle()
    assert triton.loaded == {1}


async def test_every_load_with_files_carries_the_files_of_every_version_it_keeps() -> None:
    """Triton replaces the model's folder on a load with files: a load that keeps v1 serving
    while v2 warms up must carry v1's files too, and the last one only v2's."""
    triton, book, source = FakeTriton(), AliasBook(), FakeSource(files=True)
    models = manager(triton, book, source)
    book.apply(AliasState("loan_approval", "champion", 1, 1))
    await models.wait_idle()
    book.apply(AliasState("loan_approval", "champion", 2, 2))
    await models.wait_idle()
    assert triton.log == [("load", [1]), ("warm", 1), ("load", [1, 2]), ("warm", 2), ("load", [2])]
    one = ["file:1/model.pt", "file:1/model.py"]
    two = ["file:2/model.pt", "file:2/model.py"]
    assert triton.files == [one, one + two, two]
    assert source.retained == [[1], [1, 2], [2]]  # the bundle cache follows what is loaded
