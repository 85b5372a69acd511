"""Where the Triton config and files of the versions to serve come from.

The gateway is Triton's one client and the only one that loads models. A
:class:`ModelSource` turns "serve these versions of this model" into the arguments of
Triton's load call (a :class:`LoadPlan`):

- :class:`RegistryBundles` (the gateway has a ``registry_target``): each version's
  serving bundle from the registry (``GetServingBundle``: its config as JSON and its
  version folder's files, each a blob fetched with ``DownloadArtifact`` and verified by
  its digest), handed to Triton as ``config`` plus ``file:<version>/<path>`` contents.
  No folder is shared: the gateway, the registry and Triton may each have their own
  host. Triton replaces the model's whole folder on a load with files, so the plan
  always carries the files of *every* version to keep serving (Triton does not reload a
  version whose files are unchanged). Bundles are cached by version (a blob already held,
  such as ``model.py``, the same for all versions, is not fetched again), so reloading
  after a Triton restart needs no registry; the cache drops what is no longer served
  (:meth:`RegistryBundles.retain`);
- :class:`TritonRepository` (no registry: static aliases, benchmarks): the versions are
  already in Triton's own model repository, put there by whoever runs Triton; the load
  call carries only the config (read from Triton), so Triton reads its own folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from aifactory.common.v1 import common_pb2
from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from libs import artifacts
from libs.errors import AifError, StatusError
from services.gateway.triton import Triton


@dataclass(frozen=True)
class LoadPlan:
    """Triton's load call for some versions: the config (its version policy set by the
    caller) and the override files (``"file:<version>/<path>"`` → content), or None when
    Triton loads from its own repository."""

    config: dict[str, Any]
    files: Mapping[str, bytes] | None = None


class ModelSource(Protocol):
    async def plan(self, use_case: str, model: str, versions: frozenset[int]) -> LoadPlan:
        """The load call that serves ``versions`` of ``model`` (all of them, together)."""
        ...

    def retain(self, model: str, versions: frozenset[int]) -> None:
        """Only ``versions`` of ``model`` are loaded now: forget what others needed."""
        ...


@dataclass(frozen=True)
class Bundle:
    """One version's serving bundle, its files fetched and verified."""

    version: int
    config: dict[str, Any]
    files: Mapping[str, tuple[str, bytes]]  # path in the version folder -> (digest, content)


class RegistryBundles:
    """Serving bundles from the registry over gRPC (see the module docstring)."""

    def __init__(
        self, channel: grpc.aio.Channel, *, instance_kind: str = "", timeout_s: float = 60.0
    ) -> None:
        self._stub = reg_grpc.RegistryServiceStub(channel)
        self._kind = instance_kind
        self._timeout = timeout_s
        self._bundles: dict[tuple[str, int], Bundle] = {}
        self.downloads = 0  # blobs fetched from the registry (tests, metrics)

    async def plan(self, use_case: str, model: str, versions: frozenset[int]) -> LoadPlan:
        bundles = [await self._bundle(use_case, model, v) for v in sorted(versions)]
        files = {f"file:{b.version}/{path}": blob for b in bundles for path, (_, blob) in b.files.items()}
        # One config for the model: the newest version's (each bundle renders the same
        # contract; a newer registry may have tuned batching).
        return LoadPlan(dict(bundles[-1].config), files)

    def retain(self, model: str, versions: frozenset[int]) -> None:
        for key in [k for k in self._bundles if k[0] == model and k[1] not in versions]:
            del self._bundles[key]

    def _known(self, digest: str) -> bytes | None:
        for bundle in self._bundles.values():
            for known, blob in bundle.files.values():
                if known == digest:
                    return blob
        return None

    async def _bundle(self, use_case: str, model: str, version: int) -> Bundle:
        cached = self._bundles.get((model, version))
        if cached is not None:
            return cached
        ref = common_pb2.ModelRef(use_case=use_case, model_name=model, version=version)
        try:
            reply = await self._stub.GetServingBundle(
                reg_pb.GetServingBundleRequest(ref=ref, instance_kind=self._kind), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise StatusError(
                exc.code(), f"serving bundle of {model} v{version} from the registry: {exc.details()}"
            ) from None
        if reply.triton_model_name != model:
            raise AifError(f"the registry bundles {model} v{version} as {reply.triton_model_name!r}")
        files: dict[str, tuple[str, bytes]] = {}
        for item in reply.files:
            blob = self._known(item.sha256)
            if blob is None:
                # Verified on arrival (libs.artifacts.DigestMismatch): never load damaged bytes.
                try:
                    blob = await artifacts.download(self._stub, item.sha256, timeout=self._timeout)
                except grpc.aio.AioRpcError as exc:
                    raise StatusError(
                        exc.code(), f"{item.path} of {model} v{version} from the registry: {exc.details()}"
                    ) from None
                self.downloads += 1
            files[item.path] = (item.sha256, blob)
        bundle = Bundle(version, json.loads(reply.config_json), files)
        self._bundles[(model, version)] = bundle
        return bundle


class TritonRepository:
    """Versions Triton finds in its own model repository: the config comes from Triton
    (loaded once as the repository has it when it is not loaded yet), no files travel."""

    def __init__(self, triton: Triton) -> None:
        self._triton = triton
        self._cache: dict[str, dict[str, Any]] = {}

    async def plan(self, use_case: str, model: str, versions: frozenset[int]) -> LoadPlan:
        config = self._cache.get(model)
        if config is None:
            try:
                config = await self._triton.model_config(model)
            except grpc.aio.AioRpcError:
                await self._triton.load(model, None, timeout=120)
                config = await self._triton.model_config(model)
            self._cache[model] = config
        return LoadPlan(dict(config))

    def retain(self, model: str, versions: frozenset[int]) -> None:
        return None
