"""The authentication and authorisation hooks of the gRPC interceptor.

An :class:`Authenticator` turns a call's metadata into a :class:`Principal` or
raises ``Unauthenticated``; it runs before the request is deserialised. An
:class:`Authorizer` then sees the principal, the method and the deserialised
request (its use case) and raises ``PermissionDenied``. The interceptor stores
the principal in :data:`current_principal` so servicers can read who is calling.
Health checks and reflection never reach either hook. The implementations live
in :mod:`libs.auth`; this module only defines the contracts, so ``libs.rpc``
depends on no token library.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

# Probes and tooling must work without credentials.
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

ALL_USE_CASES = "*"


@dataclass(frozen=True)
class Principal:
    """Who is calling, with which roles in which use case ("*" for all).

    ``scopes`` maps a use case to the roles held there. A principal built the old
    way (``roles`` and ``use_cases``) holds every role in every listed use case.
    """

    subject: str
    roles: frozenset[str] = frozenset()
    use_cases: frozenset[str] = field(default_factory=lambda: frozenset({ALL_USE_CASES}))
    scopes: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    # Token id, for audit records ("" when not from a token).
    token_id: str = ""

    def __post_init__(self) -> None:
        if self.scopes:
            object.__setattr__(self, "roles", frozenset().union(*self.scopes.values()))
            object.__setattr__(self, "use_cases", frozenset(self.scopes))
        else:
            object.__setattr__(self, "scopes", {uc: self.roles for uc in self.use_cases})

    def renewed(self) -> Principal:
        """An equal principal that is a new object, without re-deriving its fields: the
        authorizer tells one call from another by the principal's identity."""
        twin = object.__new__(Principal)
        twin.__dict__.update(self.__dict__)
        return twin

    def roles_in(self, use_case: str) -> frozenset[str]:
        """Roles that apply to ``use_case``: those granted for it and those granted for "*"."""
        return self.scopes.get(ALL_USE_CASES, frozenset()) | self.scopes.get(use_case, frozenset())


ANONYMOUS = Principal(subject="anonymous")

current_principal: ContextVar[Principal] = ContextVar("current_principal", default=ANONYMOUS)


class Authenticator(Protocol):
    def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        """Return the caller or raise Unauthenticated."""
        ...


class Authorizer(Protocol):
    def authorize(self, principal: Principal, method: str, request: Any) -> None:
        """Raise PermissionDenied unless ``principal`` may call ``method`` with ``request``.

        ``request`` is the deserialised message; for a client stream, each message in
        turn, or None for a stream that sent none.
        """
        ...

    def settle(self, principal: Principal, method: str) -> None:
        """Called after the servicer succeeded: raise PermissionDenied when a check the
        authorizer deferred to the servicer (the use case of a loaded resource) was not made."""
        ...


class AllowAll:
    """Authentication off: every caller is anonymous and allowed."""

    def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        return ANONYMOUS


@dataclass(frozen=True)
class ServerTls:
    """Server certificate and key (PEM); with ``client_ca`` every client must present a
    certificate signed by it (mutual TLS)."""

    cert: bytes
    key: bytes = field(repr=False)
    client_ca: bytes | None = None


@dataclass(frozen=True)
class ServerSecurity:
    """Everything that decides who may talk to a server: built by ``libs.auth.server_security``."""

    authenticator: Authenticator = field(default_factory=AllowAll)
    authorizer: Authorizer | None = None
    tls: ServerTls | None = None


def is_open(method: str) -> bool:
    return method.startswith(OPEN_SERVICES)
