"""A dependency's gRPC failure as the typed error (:mod:`libs.errors`) its callers act on.

Kept apart from the clients that use it so a service image that has no pandas (the
gateway, the registry) can import it.
"""

from __future__ import annotations

import grpc

from libs.errors import FailedPrecondition, NotFound, Unavailable

_STATUS = {
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Unavailable,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}


def typed_rpc_error(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    """A gRPC failure of a dependency → the typed error callers act on: ``Unavailable``
    (worth retrying) only for transport trouble, never for a bug or a refusal."""
    detail = f"{what}: {exc.code().name}: {exc.details()}"
    return _STATUS.get(exc.code(), FailedPrecondition)(detail)
