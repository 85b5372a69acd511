"""Authentication and authorisation for ``libs.rpc``'s interceptor, from the permission table.

:class:`JwtAuthenticator` turns ``authorization: Bearer <token>`` into a principal.
:class:`TableAuthorizer` decides with :mod:`libs.auth.permissions` after the request
is deserialised, since the use case is in the request. Servicers answering a
``RESOURCE`` method call :func:`authorize_use_case` with the loaded resource's use case.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from libs.auth.permissions import ALL, METHODS, ROLES, Permission, Role, Rule, Scope
from libs.auth.tokens import TokenVerifier, bearer_token
from libs.errors import PermissionDenied
from libs.rpc.auth import Principal

log = logging.getLogger(__name__)


class JwtAuthenticator:
    """Authenticates every call by its bearer token (see :class:`TokenVerifier`)."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        return self._verifier.verify(bearer_token(metadata))


@dataclass
class _Grant:
    """The decision on the current call, for :func:`authorize_use_case` and ``settle``."""

    principal: Principal
    method: str
    permission: Permission
    # True while the servicer still owes a check of the resource's use case.
    pending: bool
    authorizer: TableAuthorizer


_grant: ContextVar[_Grant | None] = ContextVar("aif_grant", default=None)


def use_case_of(request: Any, path: str) -> str:
    """The string at dotted ``path`` of a protobuf message ("" when unset or no message)."""
    value: Any = request
    for part in path.split("."):
        if value is None:
            return ""
        value = getattr(value, part, None)
    return value if isinstance(value, str) else ""


class TableAuthorizer:
    """Applies a permission table (by default the one in :mod:`libs.auth.permissions`)."""

    def __init__(
        self, methods: Mapping[str, Rule] = METHODS, roles: Mapping[Role, frozenset[Permission]] = ROLES
    ) -> None:
        self._methods = methods
        self._roles = roles
        # Role names → permissions, remembered: every call asks, and tokens carry few
        # distinct role sets (unknown names cannot grow it past the tokens' own variety).
        self._granted: dict[frozenset[str], frozenset[Permission]] = {}

    def grants(self, principal: Principal, use_case: str) -> frozenset[Permission]:
        """The permissions ``principal`` holds in ``use_case`` (including "*" grants)."""
        names = principal.roles_in(use_case)
        found = self._granted.get(names)
        if found is None:
            out: set[Permission] = set()
            for name in names:
                try:
                    out |= self._roles.get(Role(name), frozenset())
                except ValueError:
                    continue
            if len(self._granted) >= 1024:
                self._granted.clear()
            found = self._granted[names] = frozenset(out)
        return found

    def _anywhere(self, principal: Principal, permission: Permission) -> bool:
        return any(permission in self.grants(principal, uc) for uc in principal.scopes)

    def authorize(self, principal: Principal, method: str, request: Any) -> None:
        rule = self._methods.get(method)
        if rule is None:
            raise PermissionDenied(f"{method} is not in the permission table", reason="unknown_method")
        perm = rule.permission
        scope: str | Scope = rule.use_case
        use_case = ""
        current = _grant.get()
        later_message = current is not None and current.method == method and current.principal is principal
        if not isinstance(scope, Scope):
            use_case = use_case_of(request, scope)
            if later_message and not use_case:
                return  # continues the stream's use case, decided on its first message
            scope = use_case or rule.when_empty
        pending = False
        if scope is Scope.GLOBAL:
            allowed = perm in self.grants(principal, ALL)
        elif scope is Scope.RESOURCE:
            allowed = self._anywhere(principal, perm)
            pending = allowed and perm not in self.grants(principal, ALL)
        else:
            allowed = perm in self.grants(principal, use_case)
        if not allowed:
            reason = "scope" if self._anywhere(principal, perm) else "role"
            where = (
                f"use case {use_case!r}"
                if use_case
                else "every use case ('*')"
                if scope is Scope.GLOBAL
                else "any use case"
            )
            raise PermissionDenied(f"{principal.subject} lacks {perm} for {where}", reason=reason)
        if later_message:
            assert current is not None
            # A later message of the same request stream: keep an earlier obligation.
            current.pending = current.pending or pending
        else:
            _grant.set(_Grant(principal, method, perm, pending, self))

    def settle(self, principal: Principal, method: str) -> None:
        grant = _grant.get()
        if grant is not None and grant.method == method and grant.pending:
            log.error(
                "%s answered without checking the resource's use case "
                "(libs.auth.authorize_use_case); refused",
                method,
            )
            raise PermissionDenied(f"{method}: resource use case not checked", reason="unchecked_resource")


def authorize_use_case(use_case: str) -> None:
    """Servicers call this with the use case of the resource they loaded, before answering.

    Raises ``PermissionDenied`` when the caller lacks the method's permission in that
    use case. A no-op when authentication is off (no decision was made for the call).
    """
    grant = _grant.get()
    if grant is None:
        return
    if grant.permission not in grant.authorizer.grants(grant.principal, use_case or ALL):
        raise PermissionDenied(
            f"{grant.principal.subject} lacks {grant.permission} for use case {use_case!r}", reason="scope"
        )
    grant.pending = False


def permitted_use_case(use_case: str) -> bool:
    """For a ``RESOURCE`` method that lists resources of many use cases: whether the caller
    may see those of ``use_case`` (the listing leaves the others out). Asking settles the
    servicer's obligation to check. True when authentication is off."""
    grant = _grant.get()
    if grant is None:
        return True
    grant.pending = False
    return grant.permission in grant.authorizer.grants(grant.principal, use_case or ALL)
