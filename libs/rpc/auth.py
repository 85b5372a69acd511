"""The authentication hook of the gRPC interceptor.

An :class:`Authenticator` turns a call's metadata into a :class:`Principal` or
raises ``Unauthenticated`` / ``PermissionDenied``. The interceptor stores the
principal in :data:`current_principal` so servicers can read who is calling.
Health checks and reflection never reach the authenticator.
"""
from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

# Probes and tooling must work without credentials.
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")


@dataclass(frozen=True)
class Principal:
    """Who is calling, with what roles, for which use cases ("*" for all)."""

    subject: str
    roles: frozenset[str] = frozenset()
    use_cases: frozenset[str] = field(default_factory=lambda: frozenset({"*"}))


ANONYMOUS = Principal(subject="anonymous")

current_principal: ContextVar[Principal] = ContextVar("current_principal", default=ANONYMOUS)


class Authenticator(Protocol):
    def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        """Return the caller or raise Unauthenticated/PermissionDenied."""
        ...


class AllowAll:
    """Development default: every caller is anonymous and allowed."""

    def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        return ANONYMOUS


def is_open(method: str) -> bool:
    return method.startswith(OPEN_SERVICES)
