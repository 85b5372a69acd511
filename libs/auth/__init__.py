"""Identity and access for every service: signed tokens, the permission table, mutual TLS,
secrets out of logs, personal data out of logs.

A service's ``build`` passes ``security=server_security(settings)`` to its
``RpcServer``; the shared interceptor then authenticates every call (bearer JWT,
EdDSA, its key picked by ``kid`` from a JWKS: ``jwks``) before deserialising it and authorises it against
:mod:`libs.auth.permissions` with the request's use case. ``AIF_AUTH_MODE=off``
turns both off for a service (health and reflection are always open).

Modules: ``permissions`` (the table), ``tokens`` (issue/verify), ``jwks`` (verification
keys), ``revocation``,
``authorizer`` (interceptor hooks), ``tls`` (dev CA, certificates), ``redaction``
(log filter), ``privacy`` (hash/drop personal fields), ``kafka_acls`` (who may
read and write which topic), ``dev`` (development credentials).
"""

from __future__ import annotations

from libs.auth.authorizer import JwtAuthenticator, TableAuthorizer, authorize_use_case, permitted_use_case
from libs.auth.dev import DevAuth
from libs.auth.jwks import JWKS_FILE, JwksKeys, KeySet, StaticKeys
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
from libs.errors import ConfigError
from libs.rpc.auth import AllowAll, ServerSecurity
from libs.settings import ServiceSettings


def verification_keys(settings: ServiceSettings) -> KeySet:
    """The keys tokens are verified with: ``auth_jwks`` (a JWKS file or an IdP's URL) when
    set; else ``<auth_dir>/jwks.json``; else the one key ``<auth_dir>/jwt_public.pem`` (a
    folder mounted before JWKS existed: rotation then needs a restart)."""
    if settings.auth_jwks:
        return JwksKeys(settings.auth_jwks)
    if (settings.auth_dir / JWKS_FILE).exists():
        return JwksKeys(settings.auth_dir / JWKS_FILE)
    return StaticKeys([load_public_key(settings.auth_dir / PUBLIC_KEY_FILE)])


def server_security(settings: ServiceSettings) -> ServerSecurity:
    """Authentication, authorisation and TLS of a service's gRPC server, from its settings.

    Raises ``ConfigError`` (the service stops at start) when auth is on and the public
    keys or the revocation list are missing, or when TLS files cannot be read.
    """
    tls = server_tls(settings)
    if settings.auth_mode == "off":
        return ServerSecurity(authenticator=AllowAll(), authorizer=None, tls=tls)
    keys = verification_keys(settings)
    revoked = settings.auth_dir / REVOKED_FILE
    if not revoked.exists():
        # Verification would refuse every token (it fails closed): say why at start.
        raise ConfigError(
            f"no revocation list at {revoked} (an empty file revokes nothing; "
            "`aif token keygen` or `aif token service` makes one)"
        )
    verifier = TokenVerifier(
        keys,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        leeway_seconds=settings.auth_leeway_seconds,
        revoked=RevocationList(revoked),
        max_ttl_seconds=settings.auth_max_token_ttl_s,
    )
    return ServerSecurity(authenticator=JwtAuthenticator(verifier), authorizer=TableAuthorizer(), tls=tls)


__all__ = [
    "METHODS",
    "PUBLIC_KEY_FILE",
    "REVOKED_FILE",
    "ROLES",
    "DevAuth",
    "JWKS_FILE",
    "JwksKeys",
    "JwtAuthenticator",
    "Permission",
    "PiiPolicy",
    "PiiRedactor",
    "RevocationList",
    "Role",
    "Rule",
    "Scope",
    "StaticKeys",
    "TableAuthorizer",
    "TokenIssuer",
    "TokenVerifier",
    "authorize_use_case",
    "load_public_key",
    "parse_grants",
    "permitted_use_case",
    "redact_pii",
    "server_security",
    "verification_keys",
]
