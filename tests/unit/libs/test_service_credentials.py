"""Each service gets its own credentials: a token file it re-reads, and a folder with the
public key and the revocation list only (libs.settings.ClientSettings, DevAuth.mint_service)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import ClassVar

import jwt
import pytest

from libs.auth import REVOKED_FILE, DevAuth, RevocationList, TokenVerifier, load_public_key
from libs.auth.dev import TOKEN_FILE, service_grants
from libs.auth.jwks import JWKS_FILE
from libs.auth.tokens import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE
from libs.errors import ConfigError, Unauthenticated
from libs.settings import ClientSettings, load_settings
from libs.settings import token_file as token_file_module
from libs.settings.token_file import TokenFile


class _Caller(ClientSettings):
    service: ClassVar[str] = "caller"


def test_token_file_is_read_at_start_and_sent(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc.def.ghi\n")
    settings = load_settings(_Caller, {"AIF_CALLER_SERVICE_TOKEN_FILE": str(tmp_path / "token")})
    token = settings.bearer_token()
    assert callable(token) and token() == "abc.def.ghi"
    assert load_settings(_Caller, {"AIF_CALLER_SERVICE_TOKEN": "t"}).bearer_token() == "t"
    assert load_settings(_Caller, {}).bearer_token() is None


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read token file"), ("", "is empty"), ("a b", "more than one token")],
)
def test_a_bad_token_file_stops_the_service_naming_the_variable(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=f"AIF_CALLER_SERVICE_TOKEN_FILE: .*{message}"):
        load_settings(_Caller, {"AIF_CALLER_SERVICE_TOKEN_FILE": str(path)})


def test_token_and_token_file_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("x")
    with pytest.raises(ConfigError, match="not both"):
        load_settings(
            _Caller,
            {"AIF_CALLER_SERVICE_TOKEN": "y", "AIF_CALLER_SERVICE_TOKEN_FILE": str(tmp_path / "token")},
        )


def test_a_rotated_token_file_is_used_from_the_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_file_module, "RECHECK_S", 0.0)
    path = tmp_path / "token"
    path.write_text("first")
    token = TokenFile(path)
    assert token() == "first"
    # As Kubernetes swaps a mounted secret: a new file put in place.
    (tmp_path / "next").write_text("second")
    os.replace(tmp_path / "next", path)
    assert token() == "second"
    # Missing or empty for a moment: the last good token is kept.
    path.unlink()
    assert token() == "second"
    path.write_text("")
    assert token() == "second"


def test_service_folder_holds_its_token_the_public_key_and_revocations_only(tmp_path: Path) -> None:
    auth = DevAuth(tmp_path / "issuer")
    folder = auth.mint_service("gateway", service_grants("gateway"), ttl_seconds=60)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [PUBLIC_KEY_FILE, JWKS_FILE, REVOKED_FILE, TOKEN_FILE]
    )
    assert not (folder / PRIVATE_KEY_FILE).exists()
    assert stat.S_IMODE((folder / TOKEN_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    # The token verifies with the folder's own public key and names the service.
    verifier = TokenVerifier(
        load_public_key(folder / PUBLIC_KEY_FILE),
        issuer=auth.issuer,
        audience=auth.audience,
        revoked=RevocationList(folder / REVOKED_FILE),
    )
    token = (folder / TOKEN_FILE).read_text()
    principal = verifier.verify(token)
    assert principal.subject == "svc-gateway"
    # A revocation by the issuer reaches the service's folder at once.
    auth.revocations.revoke(jwt.decode(token, options={"verify_signature": False})["jti"])
    with pytest.raises(Unauthenticated, match="revoked"):
        verifier.verify(token)
    # A service that calls no one gets no token; minting again keeps the same list.
    quiet = auth.mint_service("ingestion")
    assert sorted(p.name for p in quiet.iterdir()) == sorted([PUBLIC_KEY_FILE, JWKS_FILE, REVOKED_FILE])
    assert (quiet / REVOKED_FILE).samefile(auth.directory / REVOKED_FILE)


def test_reminting_replaces_the_token(tmp_path: Path) -> None:
    auth = DevAuth(tmp_path)
    first = (auth.mint_service("trainer", service_grants("trainer")) / TOKEN_FILE).read_text()
    time.sleep(0.01)
    second = (auth.mint_service("trainer", service_grants("trainer")) / TOKEN_FILE).read_text()
    assert first != second
