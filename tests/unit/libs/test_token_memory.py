"""What a token verifier remembers of a checked token (its signature, claims and grants)
never outlives what must be checked on every call: revocation, expiry and its key."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from libs.auth import DevAuth, RevocationList, TokenVerifier, load_public_key
from libs.auth.jwks import KeySet, StaticKeys
from libs.errors import Unauthenticated

GRANTS = {"loan_approval": ["app"]}


class _Rotating(KeySet):
    def __init__(self, keys: KeySet) -> None:
        self.keys: KeySet | None = keys

    def get(self, kid: str) -> Ed25519PublicKey:
        if self.keys is None:
            raise Unauthenticated(f"no key {kid!r}", reason="unknown_kid")
        return self.keys.get(kid)


@pytest.fixture
def auth(tmp_path: Path) -> DevAuth:
    return DevAuth(tmp_path / "auth").ensure()


def _verifier(auth: DevAuth, keys: KeySet | None = None) -> TokenVerifier:
    return TokenVerifier(
        keys or StaticKeys([load_public_key(auth.public_key)]),
        issuer=auth.issuer,
        audience=auth.audience,
        revoked=RevocationList(auth.revocations.path),
    )


def test_a_remembered_token_is_refused_once_revoked(auth: DevAuth) -> None:
    verifier = _verifier(auth)
    token = auth.issue("bench-app", GRANTS, 600)
    first, second = verifier.verify(token), verifier.verify(token)
    assert first == second and first.roles_in("loan_approval") == {"app"}
    # A principal of its own per call: the authorizer tells calls apart by identity.
    assert first is not second
    auth.revocations.revoke(jwt.decode(token, options={"verify_signature": False})["jti"])
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(token)
    assert refused.value.reason == "revoked"


def test_a_remembered_token_whose_key_left_the_set_is_refused(auth: DevAuth) -> None:
    keys = _Rotating(StaticKeys([load_public_key(auth.public_key)]))
    verifier = _verifier(auth, keys)
    token = auth.issue("bench-app", GRANTS, 600)
    assert verifier.verify(token).subject == "bench-app"
    keys.keys = None
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(token)
    assert refused.value.reason == "unknown_kid"


def test_a_refused_token_is_refused_again(auth: DevAuth) -> None:
    verifier = _verifier(auth)
    # Signed and well formed, but living longer than the verifier allows.
    token = auth.issue("bench-app", GRANTS, 48 * 3600)
    for _ in range(2):
        with pytest.raises(Unauthenticated) as refused:
            verifier.verify(token)
        assert refused.value.reason == "lifetime_too_long"
