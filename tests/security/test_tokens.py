"""Authentication: every bad credential is UNAUTHENTICATED with the same message; health stays open;
revocation takes effect without a restart; every refusal is counted."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.auth import DevAuth, TokenIssuer, parse_grants
from libs.auth.tokens import TokenVerifier, generate_keypair, load_private_key, load_public_key
from libs.errors import InvalidArgument, Unauthenticated
from libs.rpc.interceptor import PERMISSION_DENIED_MESSAGE, UNAUTHENTICATED_MESSAGE
from libs.telemetry import Telemetry
from tests.security.conftest import ServeAll, record
from tests.security.grpc_targets import all_methods

METHOD = next(m for m in all_methods() if m.path.endswith("TrainerService/ListTrainingJobs"))
ADMIN = {"*": ["admin"]}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def status(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> tuple[grpc.StatusCode, str]:
    stub = channel.unary_unary(METHOD.path, METHOD.request.SerializeToString, lambda b: b)
    try:
        await stub(METHOD.request(), metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _other_key_token(auth: DevAuth, tmp_path) -> str:  # type: ignore[no-untyped-def]
    generate_keypair(tmp_path)
    return TokenIssuer(
        load_private_key(tmp_path / "jwt_private.pem"), issuer=auth.issuer, audience=auth.audience
    ).issue("mallory", ADMIN, 600)


def _alg_none(auth: DevAuth) -> str:
    now = int(time.time())
    return jwt.encode(
        {
            "iss": auth.issuer,
            "aud": auth.audience,
            "sub": "mallory",
            "iat": now,
            "exp": now + 600,
            "jti": "x",
            "roles": ADMIN,
        },
        key=None,
        algorithm="none",
    )


def _hs256_with_public_key(auth: DevAuth) -> str:
    """The classic key-confusion forgery: HMAC keyed with the published public key."""
    now = int(time.time())
    claims = {
        "iss": auth.issuer,
        "aud": auth.audience,
        "sub": "mallory",
        "iat": now,
        "exp": now + 600,
        "jti": "y",
        "roles": ADMIN,
    }
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    sig = hmac.new(auth.public_key.read_bytes(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(sig)}"


def _issuer(auth: DevAuth, **kw: str) -> TokenIssuer:
    return TokenIssuer(
        load_private_key(auth.directory / "jwt_private.pem"),
        issuer=kw.get("issuer", auth.issuer),
        audience=kw.get("audience", auth.audience),
    )


BAD: dict[str, Callable[[DevAuth, object], tuple[tuple[str, str], ...]]] = {
    "missing": lambda a, p: (),
    "empty bearer": lambda a, p: (("authorization", "Bearer "),),
    "not bearer": lambda a, p: (("authorization", "Basic YWxpY2U6c2VjcmV0"),),
    "garbage": lambda a, p: bearer("not-a-token"),
    "expired": lambda a, p: bearer(a.token_issuer().issue("alice", ADMIN, -60)),
    "wrong audience": lambda a, p: bearer(_issuer(a, audience="someone-else").issue("alice", ADMIN, 600)),
    "wrong issuer": lambda a, p: bearer(_issuer(a, issuer="evil-idp").issue("alice", ADMIN, 600)),
    "other signing key": lambda a, p: bearer(_other_key_token(a, p)),
    "alg none": lambda a, p: bearer(_alg_none(a)),
    "HS256 with public key": lambda a, p: bearer(_hs256_with_public_key(a)),
    "tampered claims": lambda a, p: bearer(_tamper(a.issue("alice", {"x": ["app"]}, 600))),
    "oversized": lambda a, p: bearer("eyJ" + "A" * 6_000),
}


def _tamper(token: str) -> str:
    import base64
    import json

    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ADMIN
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{sig}"


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_credentials_are_unauthenticated_and_say_nothing_more(
    serve_all: ServeAll, dev_auth: DevAuth, tmp_path, case: str
) -> None:  # type: ignore[no-untyped-def]
    channel = await serve_all()
    assert await status(channel, BAD[case](dev_auth, tmp_path)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        UNAUTHENTICATED_MESSAGE,
    )
    record("token_cases")


async def test_revoked_token_is_refused_from_the_next_call_without_restart(
    serve_all: ServeAll, dev_auth: DevAuth
) -> None:
    channel = await serve_all()
    token = dev_auth.issue("carol", ADMIN, 600)
    assert (await status(channel, bearer(token)))[0] == grpc.StatusCode.UNIMPLEMENTED
    dev_auth.revocations.revoke(jwt.decode(token, options={"verify_signature": False})["jti"])
    assert await status(channel, bearer(token)) == (grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
    # Other tokens are unaffected.
    assert (await status(channel, bearer(dev_auth.issue("carol", ADMIN, 600))))[
        0
    ] == grpc.StatusCode.UNIMPLEMENTED
    record("token_cases", 3)


async def test_small_clock_skew_is_tolerated(serve_all: ServeAll, dev_auth: DevAuth) -> None:
    channel = await serve_all()
    just_expired = dev_auth.token_issuer().issue("dave", ADMIN, -3)  # leeway is 10 s
    assert (await status(channel, bearer(just_expired)))[0] == grpc.StatusCode.UNIMPLEMENTED
    record("token_cases")


async def test_wrong_use_case_scope_is_permission_denied_with_a_generic_message(
    serve_all: ServeAll, dev_auth: DevAuth
) -> None:
    channel = await serve_all()
    stub = channel.unary_unary(
        "/aifactory.gateway.v1.GatewayService/Predict", lambda m: m.SerializeToString(), lambda b: b
    )
    from aifactory.gateway.v1 import gateway_service_pb2 as gw

    app = bearer(dev_auth.issue("loan-app", {"loan_approval": ["app"]}, 600))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(gw.PredictRequest(use_case="fraud_detection"), metadata=app, timeout=5)
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.PERMISSION_DENIED,
        PERMISSION_DENIED_MESSAGE,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(gw.PredictRequest(use_case="loan_approval"), metadata=app, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    record("token_cases", 2)


async def test_health_and_reflection_stay_open(serve_all: ServeAll) -> None:
    channel = await serve_all()
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = [s.name async for r in responses for s in r.list_services_response.service]
    assert "aifactory.registry.v1.RegistryService" in names
    record("token_cases", 2)


def _denied(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("aif_auth_denied_total{"):
            labels = dict(
                part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            key = (labels["reason"].strip('"'), labels["rpc_method"].strip('"'))
            out[key] = float(line.rsplit(" ", 1)[1])
    return out


async def test_every_refusal_is_counted_by_method_and_reason(
    serve_all: ServeAll, dev_auth: DevAuth, telemetry: Telemetry
) -> None:
    channel = await serve_all()
    before = _denied(telemetry.prometheus_text())
    await status(channel, ())
    await status(channel, bearer(dev_auth.token_issuer().issue("x", ADMIN, -60)))
    await status(channel, bearer(dev_auth.issue("p", {"*": ["producer"]}, 600)))
    after = _denied(telemetry.prometheus_text())
    for reason in ("missing_token", "expired", "role"):
        key = (reason, METHOD.path)
        assert after.get(key, 0) == before.get(key, 0) + 1, (reason, after)
    record("token_cases", 3)


def test_verifier_and_grants_unit(dev_auth: DevAuth) -> None:
    verifier = TokenVerifier(
        load_public_key(dev_auth.public_key), issuer=dev_auth.issuer, audience=dev_auth.audience
    )
    principal = verifier.verify(
        dev_auth.issue("erin", parse_grants(["loan_approval:approver", "*:auditor"]), 60)
    )
    assert principal.subject == "erin" and principal.token_id
    assert principal.roles_in("loan_approval") == {"approver", "auditor"}
    assert principal.roles_in("fraud") == {"auditor"}
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(dev_auth.token_issuer().issue("x", ADMIN, -60))
    assert info.value.reason == "expired"
    for bad in (["approver"], ["x:boss"], ["bad use case!:app"]):
        with pytest.raises(InvalidArgument):
            parse_grants(bad)
    record("token_cases", 5)


def test_a_remembered_token_still_expires(dev_auth: DevAuth) -> None:
    # The verifier remembers a checked signature; expiry is checked again on every call.
    verifier = TokenVerifier(
        load_public_key(dev_auth.public_key),
        issuer=dev_auth.issuer,
        audience=dev_auth.audience,
        leeway_seconds=0,
    )
    token = dev_auth.token_issuer().issue("erin", ADMIN, 1)
    assert verifier.verify(token).subject == "erin"
    assert verifier.verify(token).subject == "erin"  # from memory
    time.sleep(1.2)
    with pytest.raises(Unauthenticated) as err:
        verifier.verify(token)
    assert err.value.reason == "expired"
    record("token_cases")
