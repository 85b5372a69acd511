"""``aif token``: keygen, issue, revoke, certs — the development credential workflow."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest

from aif.cli.__main__ import main
from libs.auth import JwksKeys, RevocationList
from libs.auth.tokens import REVOKED_FILE, TokenVerifier, load_public_key
from libs.errors import Unauthenticated
from tests.security.conftest import record


def test_keygen_issue_verify_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--dir", str(tmp_path), "keygen"]) == 0
    assert stat.S_IMODE((tmp_path / "jwt_private.pem").stat().st_mode) == 0o600
    assert main(["token", "--dir", str(tmp_path), "keygen"]) == 2, "never overwrites a key silently"
    capsys.readouterr()
    assert (
        main(
            [
                "token",
                "--dir",
                str(tmp_path),
                "issue",
                "--sub",
                "alice",
                "--role",
                "loan_approval:approver",
                "--role",
                "*:auditor",
                "--ttl",
                "1h",
            ]
        )
        == 0
    )
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["roles"] == {"loan_approval": ["approver"], "*": ["auditor"]}
    assert claims["exp"] - claims["iat"] == 3600 and claims["sub"] == "alice"

    verifier = TokenVerifier(
        load_public_key(tmp_path / "jwt_public.pem"),
        issuer="aifactory-dev",
        audience="aifactory",
        revoked=RevocationList(tmp_path / REVOKED_FILE),
    )
    assert verifier.verify(token).roles_in("loan_approval") == {"approver", "auditor"}
    assert main(["token", "--dir", str(tmp_path), "revoke", token]) == 0
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(token)
    assert info.value.reason == "revoked"
    assert main(["token", "--dir", str(tmp_path), "revoke", claims["jti"]]) == 0  # already: no duplicate
    assert (tmp_path / REVOKED_FILE).read_text().count(claims["jti"]) == 1
    record("token_cases", 4)


@pytest.mark.parametrize(
    "args", [["--role", "loan_approval:boss"], ["--role", "approver"], ["--ttl", "soon"]]
)
def test_issue_refuses_bad_input(tmp_path: Path, args: list[str]) -> None:
    main(["token", "--dir", str(tmp_path), "keygen"])
    argv = [
        "token",
        "--dir",
        str(tmp_path),
        "issue",
        "--sub",
        "x",
        *(args if "--role" in args else ["--role", "*:app", *args]),
    ]
    try:
        assert main(argv) == 2
    except SystemExit as exc:  # argparse refuses a bad --ttl itself
        assert exc.code == 2
    record("token_cases")


def test_certs_makes_a_ca_and_one_certificate_per_service(tmp_path: Path) -> None:
    assert main(["token", "--dir", str(tmp_path), "certs"]) == 0
    names = {p.stem for p in tmp_path.glob("*.pem")}
    assert {
        "ca",
        "ingestion",
        "featurestore",
        "trainer",
        "evaluator",
        "registry",
        "gateway",
        "monitor",
        "client",
    } <= names
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tmp_path.glob("*.key"))


def test_service_mints_each_service_its_own_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from aif.stack import CALLERS, SERVICES

    assert main(["token", "--dir", str(tmp_path), "service", "--uid", str(os.getuid())]) == 0
    for name in SERVICES:
        folder = tmp_path / "services" / name
        files = {p.name for p in folder.iterdir()}
        assert files == {"jwt_public.pem", "jwks.json", REVOKED_FILE} | (
            {"token"} if name in CALLERS else set()
        ), name
        if name in CALLERS:
            verifier = TokenVerifier(
                JwksKeys(folder / "jwks.json"), issuer="aifactory-dev", audience="aifactory"
            )
            token = (folder / "token").read_text()
            principal = verifier.verify(token)
            # Its own principal and role only, for an hour.
            assert principal.subject == f"svc-{name}" and principal.roles_in("x") == {f"svc-{name}"}
            claims = jwt.decode(token, options={"verify_signature": False})
            assert claims["exp"] - claims["iat"] == 3600
    assert main(["token", "--dir", str(tmp_path), "service", "nobody"]) == 2
    capsys.readouterr()
    record("token_cases")


def test_rotate_retire_and_revoke_a_subject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def issue(sub: str) -> str:
        capsys.readouterr()
        assert main(["token", "--dir", str(tmp_path), "issue", "--sub", sub, "--role", "*:auditor"]) == 0
        return capsys.readouterr().out.strip()

    assert main(["token", "--dir", str(tmp_path), "keygen"]) == 0
    verifier = TokenVerifier(
        JwksKeys(tmp_path / "jwks.json"),
        issuer="aifactory-dev",
        audience="aifactory",
        revoked=RevocationList(tmp_path / REVOKED_FILE),
    )
    before = issue("alice")
    old_kid = jwt.get_unverified_header(before)["kid"]
    assert main(["token", "--dir", str(tmp_path), "rotate"]) == 0
    after = issue("alice")
    assert jwt.get_unverified_header(after)["kid"] != old_kid
    assert verifier.verify(before).subject == verifier.verify(after).subject == "alice"
    new_kid = jwt.get_unverified_header(after)["kid"]
    # "--": a base64url kid may begin with "-" (1 in 64), which argparse takes for an option.
    assert main(["token", "--dir", str(tmp_path), "retire", "--", new_kid]) == 2, "the signing key stays"
    assert main(["token", "--dir", str(tmp_path), "retire", "--", old_kid]) == 0
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(before)
    assert info.value.reason == "unknown_kid"
    assert main(["token", "--dir", str(tmp_path), "revoke", "--subject", "alice"]) == 0
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(after)
    assert info.value.reason == "revoked"
    assert main(["token", "--dir", str(tmp_path), "revoke"]) == 2
    # keygen --force starts over: the JWKS holds the new key only.
    assert main(["token", "--dir", str(tmp_path), "keygen", "--force"]) == 0
    assert verifier.verify(issue("bob")).subject == "bob"
    with pytest.raises(Unauthenticated):
        verifier.verify(after)
    record("token_cases", 6)


def test_a_key_id_beginning_with_a_dash_reaches_retire(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The "--" before it must survive the outer (click) parser; without it argparse reads the
    # kid as an unknown option and answers with a usage error instead of looking the key up.
    assert main(["token", "--dir", str(tmp_path), "keygen"]) == 0
    capsys.readouterr()
    assert main(["token", "--dir", str(tmp_path), "retire", "--", "-H-no-such-key"]) == 2
    err = capsys.readouterr().err
    assert "no key -H-no-such-key" in err
    assert "usage:" not in err
    record("token_cases")
