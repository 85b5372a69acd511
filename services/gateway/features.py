"""Online features of entities, for predictions by entity id.

:class:`FeatureSource` is what the business API needs; :class:`GrpcFeatureSource`
asks the feature store (``FeatureStoreService/GetOnlineFeatures``) over one
persistent channel. Unit tests fake the protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import grpc
from opentelemetry import propagate

from aifactory.featurestore.v1 import featurestore_service_pb2, featurestore_service_pb2_grpc
from libs.errors import AifError, InvalidArgument, NotFound, Unavailable
from libs.rpc.client import Token
from services.gateway.inputs import Scalar, from_value

FeatureRow = dict[str, Scalar]


class FeatureSource(Protocol):
    async def fetch(self, use_case: str, entity_ids: Sequence[str]) -> list[FeatureRow | None]:
        """Feature values by name for each entity, in order; None for an unknown entity."""
        ...


class GrpcFeatureSource:
    """On a plain channel: the trace context and the token go as call metadata, set here,
    since client interceptors on grpc.aio cost a task and a few hundred µs per call on
    this path (libs.rpc's channel does the same through an interceptor)."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 1.0, token: Token | None = None) -> None:
        self._stub = featurestore_service_pb2_grpc.FeatureStoreServiceStub(channel)
        self._timeout = timeout_s
        self._token = token
        self._bearer = ""
        self._header: tuple[tuple[str, str], ...] = ()

    def _auth(self) -> tuple[tuple[str, str], ...]:
        """The authorization header, rebuilt only when the token changed (a rotated file)."""
        token = self._token() if callable(self._token) else self._token
        if token != self._bearer:
            self._bearer = token or ""
            self._header = (("authorization", f"Bearer {token}"),) if token else ()
        return self._header

    async def fetch(self, use_case: str, entity_ids: Sequence[str]) -> list[FeatureRow | None]:
        request = featurestore_service_pb2.GetOnlineFeaturesRequest(use_case=use_case, entity_ids=entity_ids)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        try:
            reply = await self._stub.GetOnlineFeatures(
                request, timeout=self._timeout, metadata=(*carrier.items(), *self._auth())
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        rows: list[FeatureRow | None] = []
        for row in reply.rows:
            if not row.found:
                rows.append(None)
                continue
            # "view:name" or "name": the model inputs are plain names.
            rows.append({name.rpartition(":")[2]: from_value(value) for name, value in row.values.items()})
        if len(rows) != len(entity_ids):
            raise Unavailable(f"feature store answered {len(rows)} rows for {len(entity_ids)} entities")
        return rows


def _error(exc: grpc.aio.AioRpcError) -> AifError:
    code, detail = exc.code(), exc.details() or ""
    if code is grpc.StatusCode.NOT_FOUND:
        return NotFound(f"feature store: {detail}")
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument("entity_id", f"feature store: {detail}")
    return Unavailable(f"feature store unavailable: {code.name}: {detail}")
