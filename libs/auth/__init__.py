"""Identity and access for every service: signed tokens, the permission table, mutual TLS,
secrets out of logs, personal data out of logs.

A service's ``build`` passes ``security=server_security(settings)`` to its
``RpcServer``; the shared interceptor then authenticates every call (bearer JWT,
EdDSA) before deserialising it and authorises it against
:mod:`libs.auth.permissions` with the request's use case. ``AIF_AUTH_MODE=off``
turns both off for a service (health and reflection are always open).

Modules: ``permissions`` (the table), ``tokens`` (issue/verify), ``revocation``,
``authorizer`` (interceptor hooks), ``tls`` (dev CA, certificates), ``redaction``
(log filter), ``privacy`` (hash/drop personal fields), ``kafka_acls`` (who may
read and write which topic), ``dev`` (development credentials).
"""

from __future__ import annotations

from libs.auth.authorizer import JwtAuthenticator, TableAuthorizer, authorize_use_case, permitted_use_case
from libs.auth.dev import DevAuth
from libs.auth.permissions import METHODS, ROLES, Permission, Role, Rule, Scope
from libs.auth.privacy import PiiPolicy, PiiRedactor, redact_pii
from libs.auth.revocation import RevocationList
from libs.auth.tls import server_tls
from libs.auth.tokens import (
    PUBLIC_KEY_FILE,
    REVOKED_FILE,
    TokenIssuer,
    TokenVerifier,
    load_public_key,
    parse_grants,
)
from libs.rpc.auth import AllowAll, ServerSecurity
from libs.settings import ServiceSettings


def server_security(settings: ServiceSettings) -> ServerSecurity:
    """Authentication, authorisation and TLS of a service's gRPC server, from its settings.

    Raises ``ConfigError`` (the service stops at start) when auth is on and the public
    key is missing, or when TLS files cannot be read.
    """
    tls = server_tls(settings)
    if settings.auth_mode == "off":
        return ServerSecurity(authenticator=AllowAll(), authorizer=None, tls=tls)
    verifier = TokenVerifier(
        load_public_key(settings.auth_dir / PUBLIC_KEY_FILE),
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        leeway_seconds=settings.auth_leeway_seconds,
        revoked=RevocationList(settings.auth_dir / REVOKED_FILE),
    )
    return ServerSecurity(authenticator=JwtAuthenticator(verifier), authorizer=TableAuthorizer(), tls=tls)


__all__ = [
    "METHODS",
    "ROLES",
    "DevAuth",
    "JwtAuthenticator",
    "Permission",
    "PiiPolicy",
    "PiiRedactor",
    "RevocationList",
    "Role",
    "Rule",
    "Scope",
    "TableAuthorizer",
    "TokenIssuer",
    "TokenVerifier",
    "authorize_use_case",
    "parse_grants",
    "permitted_use_case",
    "redact_pii",
    "server_security",
]
