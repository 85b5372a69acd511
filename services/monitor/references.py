"""Where the monitor gets the training reference of a model version.

The registry keeps the reference each version was registered with (built by the
trainer with :func:`libs.reference.build_reference`) and serves it through
``GetReferenceStats``. A version's reference never changes, so it is fetched once and
cached. A version registered without one (NOT_FOUND) has none: its distribution checks
are skipped, its quality is still watched. When the registry cannot be reached the
lookup says so (``Unavailable``) and the caller tries again later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import grpc

from aifactory.registry.v1 import registry_service_pb2 as registry_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as registry_grpc
from libs.errors import Unavailable
from services.monitor import convert
from services.monitor.domain import VersionKey

log = logging.getLogger(__name__)


class ReferenceSource(Protocol):
    async def reference(self, key: VersionKey) -> Mapping[str, Any] | None:
        """The reference document of ``key``; None when it has none; ``Unavailable`` to retry later."""
        ...


class StaticReferences:
    """References held in memory (tests, benchmarks, a monitor without a registry)."""

    def __init__(self, references: Mapping[VersionKey, Mapping[str, Any]] | None = None) -> None:
        self.references = dict(references or {})

    async def reference(self, key: VersionKey) -> Mapping[str, Any] | None:
        return self.references.get(key)


class RegistryReferences:
    """``GetReferenceStats`` on the registry."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 5.0) -> None:
        self._stub = registry_grpc.RegistryServiceStub(channel)
        self._timeout = timeout_s

    async def reference(self, key: VersionKey) -> Mapping[str, Any] | None:
        request = registry_pb.GetReferenceStatsRequest(ref=convert.model_ref(key))
        try:
            response = await self._stub.GetReferenceStats(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                log.warning("%s has no reference statistics in the registry: distribution checks off", key)
                return None
            raise Unavailable(
                f"registry GetReferenceStats({key}): {exc.code().name} {exc.details()}"
            ) from None
        try:
            document = json.loads(response.profile_json)
        except ValueError as exc:
            log.error("reference of %s is not JSON (%s): distribution checks off", key, exc)
            return None
        return document if isinstance(document, dict) else None
