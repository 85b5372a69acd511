"""Attacks on service credentials and token keys, against a real gRPC server behind the
shared interceptor (every service's generated base servicer: UNIMPLEMENTED means the
interceptor let the call through, PERMISSION_DENIED / UNAUTHENTICATED that it refused).

- A service's token, as the stack mints it, opens only the methods that service's own
  clients call: a stolen trainer token cannot record a verdict, a gateway token cannot
  register a model, an evaluator token cannot approve or promote.
- Tokens the server must refuse even when signed with a published key: no or unknown
  ``kid``, a lifetime over the maximum, a key rotated out of the JWKS, a revoked token
  whose revocation list was then deleted, a leaked service token after its subject is
  revoked, an expired service token replayed after the stack re-minted it.
- A key rotation reaches the running server without a restart.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
import uuid
from pathlib import Path

import grpc
import jwt
import pytest

from aif.stack import SERVICES, Stack
from libs.auth import (
    DevAuth,
    JwksKeys,
    JwtAuthenticator,
    RevocationList,
    TableAuthorizer,
    TokenVerifier,
    server_security,
)
from libs.auth.dev import TOKEN_FILE
from libs.auth.permissions import METHODS, Scope
from libs.auth.tokens import ALGORITHM, REVOKED_FILE, load_private_key
from libs.rpc import ServerSecurity
from libs.settings import ServiceSettings
from libs.settings import token_file as token_file_module
from libs.settings.token_file import TokenFile
from tests.security.conftest import ServeAll, attack, record
from tests.security.grpc_targets import Method, all_methods, call, with_use_case

UC = "loan_approval"
ALLOWED = grpc.StatusCode.UNIMPLEMENTED
DENIED = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}
ADMIN = {"*": ["admin"]}

# What each service's own clients call (read from the code, not from the permission table:
# libs/lifecycle/{registry,data,owners}.py, services/gateway/{bundles,directory,features,
# feedback}.py, services/monitor/references.py), and the methods that share a permission
# with one of those (the table's unit is the permission).
NEEDS: dict[str, set[str]] = {
    "ingestion": set(),
    "featurestore": set(),
    "trainer": {
        "StreamTrainingSet",
        "GetTrainingSet",
        "CreateRun",
        "LogRunMetrics",
        "FinishRun",
        "RegisterModelVersion",
        "UploadArtifact",
        "GetDriftReport",
        "ListDriftReports",
        "ListAlerts",
    },
    "evaluator": {
        "StreamTrainingSet",
        "GetTrainingSet",
        "GetModelVersion",
        "ListModelVersions",
        "GetAlias",
        "GetServingBundle",
        "DownloadArtifact",
        "RecordEvaluation",
    },
    "registry": {"GetEvaluationReport", "GetDriftReport", "ListDriftReports", "ListAlerts"},
    "gateway": {
        "GetAlias",
        "GetModelVersion",
        "ListModelVersions",
        "GetServingBundle",
        "DownloadArtifact",
        "GetOnlineFeatures",
        "GetPrediction",
        "GetLineage",
        # The audit log confirms an AliasChanged dated before the alias's current state
        # (services/gateway/directory.py); audit.read grants the chain check with it.
        "ListAuditEvents",
        "VerifyAuditChain",
    },
    "monitor": {"GetReferenceStats"},
}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def method(name: str) -> Method:
    return next(m for m in all_methods() if m.path.rsplit("/", 1)[1] == name)


def request_in_use_case(m: Method):  # type: ignore[no-untyped-def]
    rule = METHODS[m.path]
    return with_use_case(m, None if isinstance(rule.use_case, Scope) else rule.use_case, UC)


def stack_token(auth: DevAuth, tmp_path: Path, name: str) -> str:
    """Service ``name``'s token exactly as the stack mints it for the service's process."""
    stack = Stack(log_dir=tmp_path / "logs", auth=auth)
    stack.credentials(name)
    return (auth.service_dir(name) / TOKEN_FILE).read_text()


async def attempt(channel: grpc.aio.Channel, token: str, name: str) -> grpc.StatusCode:
    m = method(name)
    return await call(channel, m, request_in_use_case(m), bearer(token))


def _settings(folder: Path, **kw: object) -> ServiceSettings:
    return ServiceSettings(auth_dir=folder, auth_leeway_seconds=0, **kw)  # type: ignore[arg-type]


async def test_a_trainer_token_cannot_record_a_verdict(
    serve_all: ServeAll, dev_auth: DevAuth, tmp_path: Path
) -> None:
    channel = await serve_all()
    token = stack_token(dev_auth, tmp_path, "trainer")
    got = await attempt(channel, token, "RecordEvaluation")
    attack(succeeded=got not in DENIED)
    assert got in DENIED
    # Its own work still goes through.
    assert await attempt(channel, token, "RegisterModelVersion") == ALLOWED


async def test_a_gateway_token_cannot_register_a_model(
    serve_all: ServeAll, dev_auth: DevAuth, tmp_path: Path
) -> None:
    channel = await serve_all()
    token = stack_token(dev_auth, tmp_path, "gateway")
    for name in ("RegisterModelVersion", "UploadArtifact", "CreateRun", "RecordEvaluation"):
        got = await attempt(channel, token, name)
        attack(succeeded=got not in DENIED)
        assert got in DENIED, name
    assert await attempt(channel, token, "GetServingBundle") == ALLOWED


async def test_an_evaluator_token_cannot_approve_promote_or_register(
    serve_all: ServeAll, dev_auth: DevAuth, tmp_path: Path
) -> None:
    channel = await serve_all()
    token = stack_token(dev_auth, tmp_path, "evaluator")
    for name in ("ApproveModelVersion", "SetAlias", "DeleteAlias", "Rollback", "RegisterModelVersion"):
        got = await attempt(channel, token, name)
        attack(succeeded=got not in DENIED)
        assert got in DENIED, name
    assert await attempt(channel, token, "RecordEvaluation") == ALLOWED


async def test_each_service_token_opens_only_what_that_service_calls(
    serve_all: ServeAll, dev_auth: DevAuth, tmp_path: Path
) -> None:
    channel = await serve_all()
    wrong = []
    for service in SERVICES:
        # Services that call no one get no token from the stack: mint one as it would.
        token = dev_auth.issue(f"svc-{service}", {"*": [f"svc-{service}"]}, 600)
        for m in all_methods():
            name = m.path.rsplit("/", 1)[1]
            got = await call(channel, m, request_in_use_case(m), bearer(token))
            if name not in NEEDS[service]:
                attack(succeeded=got not in DENIED)
            if (got == ALLOWED) != (name in NEEDS[service]):
                wrong.append(f"{service} {name}: {got.name}")
    record("permission_checks", len(SERVICES) * len(all_methods()))
    assert not wrong, "\n".join(wrong)


async def test_a_service_role_in_someone_elses_token_is_refused(
    serve_all: ServeAll, dev_auth: DevAuth
) -> None:
    """An issuer's slip (alice given svc-evaluator) must not make alice the evaluator."""
    channel = await serve_all()
    now = int(time.time())
    claims = {
        "iss": dev_auth.issuer,
        "aud": dev_auth.audience,
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "roles": {"*": ["svc-evaluator"]},
    }
    issuer = dev_auth.token_issuer()
    token = jwt.encode(
        claims, load_private_key(dev_auth.directory / "jwt_private.pem"), ALGORITHM, {"kid": issuer.kid}
    )
    got = await attempt(channel, token, "RecordEvaluation")
    attack(succeeded=got not in DENIED)
    assert got in DENIED


def _signed(auth: DevAuth, *, kid: str | None, lifetime: int = 600, iat: int | None = None) -> str:
    """A token signed with ``auth``'s real signing key, its header and lifetime as given."""
    now = int(time.time()) if iat is None else iat
    claims = {
        "iss": auth.issuer,
        "aud": auth.audience,
        "sub": "mallory",
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "roles": ADMIN,
    }
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(claims, load_private_key(auth.directory / "jwt_private.pem"), ALGORITHM, headers)


@pytest.fixture
async def jwks_server(serve_all: ServeAll, tmp_path: Path) -> tuple[DevAuth, grpc.aio.Channel, Path]:
    """A fresh issuer, and a server built as a service builds it (server_security from its
    own credentials folder: the JWKS, the revocation list)."""
    auth = DevAuth(tmp_path / "issuer").ensure()
    folder = auth.mint_service("registry")
    channel = await serve_all(server_security(_settings(folder)))
    return auth, channel, folder


async def test_tokens_signed_with_a_published_key_are_still_refused_when_bent(
    jwks_server: tuple[DevAuth, grpc.aio.Channel, Path],
) -> None:
    auth, channel, _ = jwks_server
    good = auth.issue("carol", ADMIN, 600)
    assert await attempt(channel, good, "ListTrainingJobs") == ALLOWED
    kid = auth.token_issuer().kid
    bent = {
        "no kid": _signed(auth, kid=None),
        "unknown kid": _signed(auth, kid="not-" + kid),
        "lifetime over the maximum": _signed(auth, kid=kid, lifetime=3 * 24 * 3600),
        "expired": _signed(auth, kid=kid, lifetime=600, iat=int(time.time()) - 3600),
    }
    for case, token in bent.items():
        got = await attempt(channel, token, "ListTrainingJobs")
        attack(succeeded=got != grpc.StatusCode.UNAUTHENTICATED)
        assert got == grpc.StatusCode.UNAUTHENTICATED, case
    record("token_cases", len(bent) + 1)


async def test_a_key_rotation_reaches_the_running_server_and_a_retired_key_is_refused(
    jwks_server: tuple[DevAuth, grpc.aio.Channel, Path],
) -> None:
    auth, channel, _ = jwks_server
    old_kid = auth.token_issuer().kid
    before = auth.issue("carol", ADMIN, 600)
    new_kid = auth.rotate()
    assert new_kid != old_kid and auth.token_issuer().kid == new_kid
    after = auth.issue("carol", ADMIN, 600)
    # No restart: the new key verifies at once, the old one until it is retired.
    assert await attempt(channel, after, "ListTrainingJobs") == ALLOWED
    assert await attempt(channel, before, "ListTrainingJobs") == ALLOWED
    auth.retire(old_kid)
    got = await attempt(channel, before, "ListTrainingJobs")
    attack(succeeded=got != grpc.StatusCode.UNAUTHENTICATED)
    assert got == grpc.StatusCode.UNAUTHENTICATED
    assert await attempt(channel, after, "ListTrainingJobs") == ALLOWED
    record("token_cases", 4)


async def test_a_revoked_token_stays_refused_when_the_revocation_list_is_deleted(
    jwks_server: tuple[DevAuth, grpc.aio.Channel, Path],
) -> None:
    auth, channel, folder = jwks_server
    token = auth.issue("carol", ADMIN, 600)
    auth.revocations.revoke(jwt.decode(token, options={"verify_signature": False})["jti"])
    assert await attempt(channel, token, "ListTrainingJobs") == grpc.StatusCode.UNAUTHENTICATED
    # The list is lost (a bad mount, a wiped volume): fail closed, not "nothing revoked".
    (folder / REVOKED_FILE).unlink()
    (auth.directory / REVOKED_FILE).unlink()
    got = await attempt(channel, token, "ListTrainingJobs")
    attack(succeeded=got != grpc.StatusCode.UNAUTHENTICATED)
    assert got == grpc.StatusCode.UNAUTHENTICATED
    # Every other token too, until the list is back.
    assert await attempt(channel, auth.issue("dave", ADMIN, 600), "ListTrainingJobs") == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    record("token_cases", 3)


async def test_revoking_a_service_subject_refuses_its_leaked_tokens_not_its_next_ones(
    jwks_server: tuple[DevAuth, grpc.aio.Channel, Path],
) -> None:
    auth, channel, _ = jwks_server
    leaked = auth.issue("svc-trainer", {"*": ["svc-trainer"]}, 600)
    assert await attempt(channel, leaked, "RegisterModelVersion") == ALLOWED
    auth.revocations.revoke_subject("svc-trainer", time.time())
    got = await attempt(channel, leaked, "RegisterModelVersion")
    attack(succeeded=got != grpc.StatusCode.UNAUTHENTICATED)
    assert got == grpc.StatusCode.UNAUTHENTICATED
    await asyncio.sleep(1.1)  # the cut-off is rounded up to the next whole second
    fresh = auth.issue("svc-trainer", {"*": ["svc-trainer"]}, 600)
    assert await attempt(channel, fresh, "RegisterModelVersion") == ALLOWED
    record("token_cases", 2)


async def test_short_lived_service_tokens_are_reminted_and_read_without_restart(
    serve_all: ServeAll, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack re-mints a service's 3 s token; the service's TokenFile picks up each new
    one; the first token, replayed after it expired, is refused."""
    monkeypatch.setattr(token_file_module, "RECHECK_S", 0.0)
    auth = DevAuth(tmp_path / "issuer").ensure()
    stack = Stack(log_dir=tmp_path / "logs", auth=auth, token_ttl_s=3)
    folder = stack.credentials("trainer")
    channel = await serve_all(server_security(_settings(auth.mint_service("registry"))))
    current = TokenFile(folder / TOKEN_FILE)
    first = current()
    stack.start_refresher(["trainer"])
    try:
        await asyncio.sleep(4.5)
        assert await attempt(channel, current(), "RegisterModelVersion") == ALLOWED
        assert current() != first
    finally:
        stack.stop_refresher()
    got = await attempt(channel, first, "RegisterModelVersion")
    attack(succeeded=got != grpc.StatusCode.UNAUTHENTICATED)
    assert got == grpc.StatusCode.UNAUTHENTICATED
    record("token_cases", 2)


class _Idp:
    """An identity provider's jwks_uri: serves ``document``, counts fetches."""

    def __init__(self, document: bytes) -> None:
        idp = self
        self.document, self.fetches = document, 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                idp.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(idp.document)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_keys_from_an_idp_url_rotate_and_forged_kids_cannot_flood_it(
    serve_all: ServeAll, tmp_path: Path
) -> None:
    """Verification against an IdP's JWKS URL (as OIDC publishes it): a key it adds is taken
    up without a restart; a stream of tokens with made-up kids costs the IdP at most one
    fetch per min_refetch_s, not one per call."""
    auth = DevAuth(tmp_path / "idp").ensure()
    idp = _Idp(auth.jwks.read_bytes())
    try:
        keys = JwksKeys(idp.url, refresh_s=300, min_refetch_s=1.0)
        security = ServerSecurity(
            JwtAuthenticator(
                TokenVerifier(
                    keys,
                    issuer=auth.issuer,
                    audience=auth.audience,
                    revoked=RevocationList(auth.directory / REVOKED_FILE),
                )
            ),
            TableAuthorizer(),
        )
        channel = await serve_all(security)
        assert await attempt(channel, auth.issue("carol", ADMIN, 600), "ListTrainingJobs") == ALLOWED
        fetched = idp.fetches
        kid = auth.token_issuer().kid
        for i in range(50):
            forged = _signed(auth, kid=f"{kid}-{i}")
            got = await attempt(channel, forged, "ListTrainingJobs")
            attack(succeeded=got != grpc.StatusCode.UNAUTHENTICATED)
            assert got == grpc.StatusCode.UNAUTHENTICATED
        assert idp.fetches - fetched <= 2, f"{idp.fetches - fetched} fetches for 50 forged kids"
        # The IdP rotates: the next token's kid is unknown and fetched again, in the background
        # (the event loop never waits on the IdP): it verifies once the fetch has landed.
        auth.rotate()
        idp.document = auth.jwks.read_bytes()
        await asyncio.sleep(1.1)
        rotated = auth.issue("carol", ADMIN, 600)
        got = await attempt(channel, rotated, "ListTrainingJobs")
        deadline = time.monotonic() + 5.0
        while got != ALLOWED and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            got = await attempt(channel, rotated, "ListTrainingJobs")
        assert got == ALLOWED
        record("token_cases", 52)
    finally:
        idp.close()
