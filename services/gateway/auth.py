"""Bearer tokens on the Open Inference Protocol server, which has no shared interceptor.

The caller must hold ``predictions.request`` in the model's use case. A verified token
is remembered for a few seconds, so the hot path does not verify a signature per call.
"""

from __future__ import annotations

import time
from typing import Any

from libs.errors import AifError, PermissionDenied, Unauthenticated
from libs.rpc.auth import Authenticator, Principal


class OipAuth:
    """Bearer-token check for the OIP server."""

    def __init__(self, authenticator: Authenticator, authorizer: Any | None, ttl_s: float = 5.0) -> None:
        self._authn = authenticator
        self._authz = authorizer
        self._ttl = ttl_s
        self._cache: dict[str, tuple[Principal, float]] = {}

    def check(self, method: str, metadata: Any, use_case: str | None) -> Principal:
        """The caller, who must hold ``predictions.request`` in ``use_case`` (when given)."""
        principal = self.authenticate(method, metadata)
        if use_case is not None:
            self.authorize(principal, use_case)
        return principal

    def authenticate(self, method: str, metadata: Any) -> Principal:
        token = ""
        for key, value in metadata or ():
            if key == "authorization":
                token = value
                break
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            principal = self._authn.authenticate(method, {"authorization": token} if token else {})
        except AifError as exc:
            # The caller learns no more than this; the reason stays for logs and metrics.
            raise Unauthenticated(
                "missing or invalid credentials", reason=getattr(exc, "reason", "unauthenticated")
            ) from None
        if token:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (principal, now + self._ttl)
        return principal

    def authorize(self, principal: Principal, use_case: str) -> None:
        if self._authz is not None:
            from libs.auth.permissions import Permission

            if Permission.PREDICTIONS_REQUEST not in self._authz.grants(principal, use_case):
                raise PermissionDenied("permission denied")
