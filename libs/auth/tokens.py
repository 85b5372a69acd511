"""Signed tokens: JWTs signed with Ed25519 (EdDSA), issued from a local key in development.

Claims: ``iss``, ``aud``, ``sub``, ``iat``, ``exp``, ``jti`` and ``roles``, a mapping
use case → role names where "*" means every use case::

    {"sub": "alice", "roles": {"loan_approval": ["approver"], "*": ["auditor"]}, ...}

The header names the signing key (``kid``, its RFC 7638 thumbprint), so verifiers pick
it from a JWKS document (:mod:`libs.auth.jwks`) as they would an OIDC provider's: keys
rotate without a restart. Verification checks the key id, the signature (EdDSA only: no
"none", no HMAC confusion), the issuer, the audience, the expiry with a small leeway,
every required claim, the lifetime (``exp - iat`` above the maximum is refused even when
signed: a stolen long-lived token is what the maximum exists to bound), the roles' shape,
and the revocation list (fails closed). Failures raise ``Unauthenticated`` whose
``reason`` is a short code for logs and metrics.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from libs.auth.jwks import KeySet, key_id, keys_of
from libs.auth.permissions import ALL, SERVICE_PREFIX, Role
from libs.auth.revocation import RevocationList
from libs.errors import ConfigError, InvalidArgument, Unauthenticated
from libs.rpc.auth import Principal

ALGORITHM = "EdDSA"
PRIVATE_KEY_FILE = "jwt_private.pem"
PUBLIC_KEY_FILE = "jwt_public.pem"
REVOKED_FILE = "revoked.txt"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "exp", "jti", "roles"]
# Tokens living longer than this (exp - iat) are refused by default (settings:
# auth_max_token_ttl_s); services' own tokens live an hour (libs.auth.dev).
DEFAULT_MAX_TOKEN_TTL_S = 24 * 3600
# Longer tokens are refused unparsed: ours are a few hundred bytes (gRPC itself refuses
# metadata over 8 KiB with RESOURCE_EXHAUSTED).
MAX_TOKEN_BYTES = 4096
# How many verified tokens a verifier remembers (see TokenVerifier.verify).
_VERIFIED_CACHE_SIZE = 4096
_ROLE_NAMES = frozenset(r.value for r in Role)
_USE_CASE = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$")


def generate_keypair(directory: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Writes a new Ed25519 key pair (private key 0600); returns (private, public) paths."""
    private_path, public_path = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    if private_path.exists() and not overwrite:
        raise ConfigError(f"{private_path} exists; refusing to replace it (use --force)")
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created 0600 from the start, never world-readable even for an instant.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(private_path, 0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = _load(path, serialization.load_pem_private_key, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = _load(path, serialization.load_pem_public_key)
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key


def _load(path: Path, loader: Any, **kwargs: Any) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no key at {path}: run `aif token keygen` (or set AIF_AUTH_DIR)") from None
    try:
        return loader(data, **kwargs)
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM key: {exc}") from None


def parse_grants(specs: Iterable[str]) -> dict[str, list[str]]:
    """``["loan_approval:approver", "*:auditor"]`` → ``{"loan_approval": ["approver"], "*": ["auditor"]}``."""
    grants: dict[str, list[str]] = {}
    for spec in specs:
        use_case, sep, role = spec.rpartition(":")
        if not sep:
            raise InvalidArgument("role", f"{spec!r} is not USE_CASE:ROLE (use '*:ROLE' for all use cases)")
        grants.setdefault(use_case, [])
        if role not in grants[use_case]:
            grants[use_case].append(role)
    check_grants(grants)
    return grants


def check_grants(grants: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """The grants as a mapping of frozensets; InvalidArgument on a bad use case or role."""
    known = _ROLE_NAMES
    out: dict[str, frozenset[str]] = {}
    for use_case, roles in grants.items():
        if not isinstance(use_case, str) or not _USE_CASE.match(use_case):
            raise InvalidArgument("roles", f"bad use case {use_case!r}")
        if isinstance(roles, str) or not all(isinstance(r, str) for r in roles):
            raise InvalidArgument("roles", f"roles of {use_case!r} must be a list of names")
        unknown = sorted(set(roles) - known)
        if unknown:
            raise InvalidArgument(
                "roles", f"unknown role(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        out[use_case] = frozenset(roles)
    return out


def check_service_roles(subject: str, grants: Mapping[str, Iterable[str]]) -> None:
    """A service's role (``svc-<name>``) belongs to that service's principal only: a token
    of any other subject holding one is refused (InvalidArgument), so a mis-issued token
    cannot pass for a service."""
    for roles in grants.values():
        for role in roles:
            if role.startswith(SERVICE_PREFIX) and role != subject:
                raise InvalidArgument("roles", f"role {role} is for the subject {role} only, not {subject!r}")


class TokenIssuer:
    """Signs tokens with the private key (the CLI and tests; no service holds this key)."""

    def __init__(self, private_key: Ed25519PrivateKey, *, issuer: str, audience: str) -> None:
        self._key = private_key
        self.issuer, self.audience = issuer, audience
        self.kid = key_id(private_key.public_key())

    def issue(
        self,
        subject: str,
        roles: Mapping[str, Iterable[str]],
        ttl_seconds: float,
        *,
        jti: str | None = None,
        now: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        if not subject:
            raise InvalidArgument("sub", "a token needs a subject")
        grants = {uc: sorted(rs) for uc, rs in check_grants(roles).items()}
        check_service_roles(subject, grants)
        issued = int(now if now is not None else time.time())
        claims = {
            **(extra or {}),
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": issued,
            "exp": issued + int(ttl_seconds),
            "jti": jti or uuid.uuid4().hex,
            "roles": grants,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})


_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAlgorithmError, "bad_algorithm"),
    (jwt.DecodeError, "malformed"),
]


def _header_kid(token: str) -> str:
    """The ``kid`` of an EdDSA token's header (unverified: it only selects the key)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"token header: {exc}", reason="malformed") from None
    if header.get("alg") != ALGORITHM:
        raise Unauthenticated(f"algorithm {header.get('alg')!r} is not {ALGORITHM}", reason="bad_algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 128:
        raise Unauthenticated("token header names no key (kid)", reason="missing_kid")
    return kid


@dataclass(frozen=True, slots=True)
class _Verified:
    """What a token's signature and claims established once: the key that verified it and
    the claims' checked values (see :meth:`TokenVerifier.verify`)."""

    kid: str
    key: Ed25519PublicKey
    subject: str
    jti: str
    issued: float
    expires: float
    scopes: dict[str, frozenset[str]]
    principal: Principal


class TokenVerifier:
    """Checks a token and returns its :class:`Principal`, or raises ``Unauthenticated``."""

    def __init__(
        self,
        keys: KeySet | Ed25519PublicKey,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: float = 10.0,
        revoked: RevocationList | None = None,
        max_ttl_seconds: float = DEFAULT_MAX_TOKEN_TTL_S,
    ) -> None:
        self._keys = keys_of(keys)
        self.issuer, self.audience = issuer, audience
        self._leeway = leeway_seconds
        self._revoked = revoked
        self._max_ttl = max_ttl_seconds
        # token → what verifying it established. A signature check costs ~0.1-0.5 ms, and
        # parsing the header and checking the claims' shape and grants tens of µs more,
        # while callers send the same token for an hour: only what depends on the token's
        # bytes alone is remembered (its key id, signature, issuer, audience, claims' shape,
        # lifetime and grants). Expiry and revocation are checked on every call, and a token
        # whose key left the key set (rotated out) is verified afresh, and fails.
        self._verified: dict[str, _Verified] = {}

    def _decode(self, token: str, kid: str, key: Ed25519PublicKey) -> _Verified:
        """The full check of a token not verified before (all but expiry and revocation)."""
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidTokenError as exc:
            reason = next((r for cls, r in _REASONS if isinstance(exc, cls)), "invalid")
            # pyjwt's messages name claims, never the token itself.
            raise Unauthenticated(f"token rejected: {exc}", reason=reason) from None
        subject, jti = claims["sub"], claims["jti"]
        if not isinstance(subject, str) or not subject or not isinstance(jti, str) or not jti:
            raise Unauthenticated("token has an empty subject or id", reason="bad_claims")
        issued, expires = claims["iat"], claims["exp"]
        if not isinstance(issued, int | float) or not isinstance(expires, int | float):
            raise Unauthenticated("iat or exp is not a number", reason="bad_claims")
        if expires - issued > self._max_ttl:
            raise Unauthenticated(
                f"token of {subject} lives {expires - issued:.0f}s, over the {self._max_ttl:.0f}s maximum",
                reason="lifetime_too_long",
            )
        roles = claims["roles"]
        if not isinstance(roles, dict):
            raise Unauthenticated("roles claim is not a mapping", reason="bad_claims")
        try:
            scopes = check_grants(roles)
            check_service_roles(subject, scopes)
        except InvalidArgument as exc:
            raise Unauthenticated(f"roles claim: {exc.message}", reason="bad_claims") from None
        principal = Principal(subject=subject, scopes=scopes, token_id=jti)
        return _Verified(kid, key, subject, jti, float(issued), float(expires), scopes, principal)

    def verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("token too long", reason="malformed")
        hit = self._verified.get(token)
        if hit is not None:
            # The key id came from this very token's header: no need to parse it again.
            if self._keys.get(hit.kid) is not hit.key:
                hit = None
            elif time.time() > hit.expires + self._leeway:
                raise Unauthenticated("token rejected: Signature has expired", reason="expired")
        if hit is None:
            kid = _header_kid(token)
            hit = self._decode(token, kid, self._keys.get(kid))
            if len(self._verified) >= _VERIFIED_CACHE_SIZE:
                self._verified.clear()  # a flood of distinct valid tokens only costs re-checks
            self._verified[token] = hit
        if self._revoked is not None:
            self._revoked.check(hit.jti, hit.subject, hit.issued)
        # A principal of its own per call: the authorizer tells a stream's later messages
        # from a new call by the principal's identity.
        return hit.principal.renewed()


def bearer_token(metadata: Mapping[str, str]) -> str:
    """The token of an ``authorization: Bearer <token>`` header, or Unauthenticated."""
    header = metadata.get("authorization")
    if not header:
        raise Unauthenticated("no authorization metadata", reason="missing_token")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization metadata is not 'Bearer <token>'", reason="malformed")
    return token.strip()


__all__ = [
    "ALL",
    "TokenIssuer",
    "TokenVerifier",
    "bearer_token",
    "check_grants",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "parse_grants",
]
