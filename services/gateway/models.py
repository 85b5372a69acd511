"""The served models: follows the alias book and moves Triton with no failed request.

For each use case the manager keeps a :class:`Served` (its input schema and its
current :class:`Routing`), replaced whole, so a request reads one consistent plan.
When an alias moves, :meth:`ModelManager.reconcile` runs, one at a time per use case:

1. load the model in Triton with a config whose ``version_policy`` is ``specific``
   and lists the old *and* new versions (Triton keeps serving versions that stay), with
   the files of all of them when they come from the registry (Triton replaces the
   model's folder on a load with files, and reloads no version whose files are unchanged);
2. warm each new version with a few inferences;
3. switch the routing, so new requests go to the new versions;
4. wait (at most ``retire_grace_s``) until no request is in flight on a retired version;
5. load the config again with the new versions only: Triton unloads the rest.

If a load fails (say the registry is unreachable), the old plan keeps serving and the
reconcile is retried with backoff. After a Triton outage (a restarted Triton has no model
loaded) the recovery hook loads every plan again.

The config and files of each load come from a :class:`~services.gateway.bundles.ModelSource`:
the registry's serving bundles (the config variant by ``triton_config_variant``), or,
with no registry, Triton's own model repository.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace

import grpc
import numpy as np

from libs.errors import NotFound, Unavailable
from libs.retry import RetryPolicy
from libs.usecase import UnknownUseCase, UseCase
from services.gateway.bundles import ModelSource
from services.gateway.directory import AliasBook
from services.gateway.inputs import InputSchema
from services.gateway.routing import CHALLENGER, CHAMPION, Routing
from services.gateway.triton import Triton, TritonUnavailable, encode_request

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Served:
    """A use case as served now: what to call and how to route."""

    use_case: str
    model: str
    schema: InputSchema
    routing: Routing | None  # None: no champion yet (or not loaded yet)
    # Rows per Triton call (the model's max_batch_size).
    max_batch: int = 256


class ModelManager:
    def __init__(
        self,
        usecases: Mapping[str, UseCase],
        book: AliasBook,
        triton: Triton,
        source: ModelSource,
        *,
        warmup_requests: int = 3,
        retire_grace_s: float = 2.0,
        load_timeout_s: float = 120.0,
        retry_s: float = 2.0,
    ) -> None:
        self.usecases = dict(usecases)
        self._book = book
        self._triton = triton
        self._source = source
        self._warmup = warmup_requests
        self._grace = retire_grace_s
        self._load_timeout = load_timeout_s
        self._retry = retry_s
        self.served: dict[str, Served] = {
            name: Served(name, name, InputSchema(uc), None) for name, uc in self.usecases.items()
        }
        self.inflight: defaultdict[tuple[str, int], int] = defaultdict(int)
        self._loaded: dict[str, frozenset[int]] = {}
        self._locks = {name: asyncio.Lock() for name in self.usecases}
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._verified: dict[str, float] = {}
        self._max_batch: dict[str, int] = {}
        self._closed = False
        self.switches = 0
        book.listen(self.schedule)
        triton.on_recover(self.reload_all)
        triton.on_model_trouble(self.verify)

    # -- what the hot path reads --------------------------------------------------------

    def get(self, use_case: str) -> Served:
        served = self.served.get(use_case)
        if served is None:
            raise UnknownUseCase(use_case, self.served)
        return served

    def routing(self, use_case: str) -> tuple[Served, Routing]:
        served = self.get(use_case)
        if served.routing is None:
            raise NotFound(f"use case {use_case!r} has no champion model being served")
        return served, served.routing

    # -- what the alias book asks -------------------------------------------------------

    def desired(self, use_case: str) -> Routing | None:
        champion = self._book.version(use_case, CHAMPION)
        if not champion:
            return None
        policy = self.usecases[use_case].deployment
        return Routing(
            use_case, champion, self._book.version(use_case, CHALLENGER), policy.strategy, policy.canary_share
        )

    def schedule(self, use_case: str) -> None:
        """Reconcile ``use_case`` in the background (coalesces bursts of alias changes)."""
        if use_case not in self.usecases or self._closed:
            return
        task = self._pending.get(use_case)
        if task is None or task.done():
            self._pending[use_case] = asyncio.get_running_loop().create_task(
                self._reconcile_until_done(use_case)
            )

    async def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Until no reconcile is pending or ``timeout_s`` passed; True when idle."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while pending := [t for t in self._pending.values() if not t.done()]:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(pending, timeout=left)
        return True

    async def start(self) -> None:
        """Load what the book says now; a use case that fails keeps retrying in the background."""
        for name in self.usecases:
            self.schedule(name)
        await self.wait_idle()

    async def close(self) -> None:
        self._closed = True
        for task in self._pending.values():
            task.cancel()
        await asyncio.gather(*self._pending.values(), return_exceptions=True)

    # -- what the use-case catalogue asks (a use case applied or retired while running) ----

    def take_up(self, uc: UseCase) -> Served:
        """Serve ``uc`` from now on, or follow a new version of its spec (a changed
        deployment policy re-routes at once); its champion loads in the background."""
        name = uc.name
        self.usecases[name] = uc
        served = self.served.get(name)
        schema = InputSchema(uc)
        self.served[name] = (
            Served(name, name, schema, None) if served is None else replace(served, schema=schema)
        )
        self._locks.setdefault(name, asyncio.Lock())
        self.schedule(name)
        return self.served[name]

    async def retire(self, name: str) -> None:
        """Stop serving ``name``: requests get NOT_FOUND at once, its model leaves Triton."""
        if self.usecases.pop(name, None) is None:
            return
        task = self._pending.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        served = self.served.pop(name, None)
        if served is not None:
            self._source.retain(served.model, frozenset())
        async with self._locks[name]:
            loaded = self._loaded.pop(name, frozenset())
            if served is not None and loaded:
                try:
                    await self._triton.unload(served.model)
                except Exception as exc:  # noqa: BLE001 - Triton keeps an idle model; nothing routes to it
                    log.warning("unloading %s of retired use case %s failed: %s", served.model, name, exc)
        log.info("stopped serving retired use case %s", name)

    async def reload_all(self) -> None:
        """After a Triton outage: every plan is loaded again (a restarted Triton has none)."""
        for name in self.usecases:
            try:
                await self.reconcile(name, force=True)
            except Exception as exc:  # noqa: BLE001 - retried in the background
                log.warning("reloading %s after the outage failed (%s); retrying", name, exc)
                self.schedule(name)

    # -- reconciling --------------------------------------------------------------------

    async def _reconcile_until_done(self, use_case: str) -> None:
        # Converging on the desired plan, not handling a message: no attempt bound (the old
        # plan keeps serving meanwhile, nothing queues behind it, and close() cancels it).
        # Any error type: a load that fails now (files not exported yet, Triton busy) may
        # pass later. Waits retry_s, doubling to 30 s, jittered so gateways spread out.
        policy = RetryPolicy(
            attempts=None, initial_s=self._retry, max_s=30.0, jitter_s=self._retry / 2, retry_on=(Exception,)
        )
        await policy.call(f"serving {use_case} as the registry says", lambda: self.reconcile(use_case))

    async def reconcile(self, use_case: str, *, force: bool = False) -> None:
        """Brings Triton and the routing of ``use_case`` to what the alias book says;
        ``force``: assume Triton has nothing loaded (it restarted)."""
        async with self._locks[use_case]:
            # Read inside the lock: the latest desired plan wins over the one that woke us.
            target = self.desired(use_case)
            served = self.served[use_case]
            current = served.routing
            if force:
                self._loaded.pop(use_case, None)
            elif use_case not in self._loaded:
                self._loaded[use_case] = await self._adopt(served.model)
            loaded = self._loaded.get(use_case, frozenset())
            if target is None:
                if current is not None:
                    self.served[use_case] = replace(served, routing=None)
                    await self._retire(use_case, current.versions)
                if loaded:
                    await self._triton.unload(served.model)
                    self._loaded.pop(use_case, None)
                self._source.retain(served.model, frozenset())
                return
            if current == target and loaded == target.versions:
                return
            started = time.perf_counter()
            # Versions serving now keep serving while the new ones load and warm up.
            serving = current.versions & loaded if current is not None else frozenset()
            keep = serving | target.versions
            if loaded != keep:
                await self._load(served, keep)
            for version in sorted(target.versions - loaded):
                await self._warm(served, version)
            self._loaded[use_case] = keep
            self.served[use_case] = replace(
                served, routing=target, max_batch=self._max_batch.get(served.model, 256)
            )
            self.switches += 1
            retired = keep - target.versions
            if retired:
                await self._retire(use_case, retired)
                await self._load(served, target.versions)
                self._loaded[use_case] = target.versions
            log.info(
                "serving %s: champion v%d%s (%s) after %.1fs",
                use_case,
                target.champion,
                f", challenger v{target.challenger}" if target.challenger else "",
                target.strategy,
                time.perf_counter() - started,
            )

    async def verify(self, model: str) -> None:
        """A call to ``model`` failed while Triton is up: if Triton lost versions we serve
        (it restarted between two requests), load them again."""
        if model not in self.served or self._closed:
            return
        now = time.monotonic()
        if now - self._verified.get(model, 0.0) < 1.0:
            return
        self._verified[model] = now
        try:
            ready = await self._triton.ready_versions(model)
        except (grpc.aio.AioRpcError, TritonUnavailable):
            return
        if not self._loaded.get(model, frozenset()) <= ready:
            log.warning("triton lost versions of %s (ready: %s): loading them again", model, sorted(ready))
            self._loaded.pop(model, None)
            self.schedule(model)

    async def _adopt(self, model: str) -> frozenset[int]:
        """Versions Triton already serves under a version policy like ours (a gateway
        restarted beside a running Triton): they need no load. Loading again is not free:
        Triton reloads a version whose folder changed since its load."""
        try:
            ready = await self._triton.ready_versions(model)
            if not ready:
                return frozenset()
            policy = (await self._triton.model_config(model)).get("version_policy", {})
        except grpc.aio.AioRpcError:
            return frozenset()
        listed = {int(v) for v in policy.get("specific", {}).get("versions", [])}
        return frozenset(ready) if listed == ready else frozenset()

    async def _load(self, served: Served, versions: frozenset[int]) -> None:
        model = served.model
        plan = await self._source.plan(served.use_case, model, versions)
        config = dict(plan.config)
        self._max_batch[model] = max(1, int(config.get("max_batch_size") or 1))
        config["version_policy"] = {"specific": {"versions": sorted(versions)}}
        try:
            await self._triton.load(model, config, timeout=self._load_timeout, files=plan.files)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(
                f"triton could not load {model} versions {sorted(versions)}: {exc.details()}"
            ) from None
        self._source.retain(model, versions)

    async def _warm(self, served: Served, version: int) -> None:
        row = np.zeros((1, served.schema.width), dtype=np.float32).tobytes()
        for _ in range(self._warmup):
            try:
                await self._triton.infer_raw(
                    encode_request(served.model, str(version), row, 1, served.schema.width), checked=False
                )
            except (grpc.aio.AioRpcError, TritonUnavailable) as exc:
                raise Unavailable(f"warm-up of {served.model} v{version} failed: {exc}") from None

    async def _retire(self, use_case: str, versions: frozenset[int]) -> None:
        deadline = time.monotonic() + self._grace
        while time.monotonic() < deadline and any(self.inflight[(use_case, v)] for v in versions):
            await asyncio.sleep(0.005)
