"""Mutual TLS between services: a client with a certificate from the CA gets through, a client
without one (or with one from another CA) fails the handshake; and the clients a service
builds from its settings (``AIF_CLIENT_TLS_*``) reach a server that requires mutual TLS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aifactory.trainer.v1 import trainer_service_pb2 as tr
from aifactory.trainer.v1 import trainer_service_pb2_grpc as tr_grpc
from libs.auth import DevAuth, server_security
from libs.auth.tls import CertFiles, DevPki, client_tls, create_ca, env_client_tls, issue_cert
from libs.errors import ConfigError
from libs.rpc import ClientTls, RpcServer, channel, secure_channel
from libs.rpc.healthcheck import check
from libs.settings import load_settings
from libs.telemetry import Telemetry
from services.gateway.settings import GatewaySettings
from services.registry.settings import RegistrySettings
from services.trainer.settings import TrainerSettings
from tests.security.conftest import record

SERVICE = "aifactory.trainer.v1.TrainerService"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    create_ca(directory)
    issue_cert(directory, "trainer")
    issue_cert(directory, "gateway")
    # A certificate from a CA the server does not trust.
    rogue = directory / "rogue"
    create_ca(rogue)
    issue_cert(rogue, "gateway")
    return directory


async def _trainer(settings: TrainerSettings, telemetry: Telemetry) -> RpcServer:
    server = RpcServer("127.0.0.1:0", telemetry, security=server_security(settings))
    server.add_service(
        tr_grpc.add_TrainerServiceServicer_to_server, tr_grpc.TrainerServiceServicer(), SERVICE
    )
    await server.start()
    return server


@pytest.fixture
async def mtls_server(pki: Path, dev_auth: DevAuth, telemetry: Telemetry) -> AsyncIterator[int]:
    """The trainer as its build wires it: TLS files and auth from settings (AIF_TRAINER_TLS_*)."""
    settings = load_settings(
        TrainerSettings,
        {
            **dev_auth.env(),
            "AIF_TRAINER_TLS_CERT": str(pki / "trainer.pem"),
            "AIF_TRAINER_TLS_KEY": str(pki / "trainer.key"),
            "AIF_TRAINER_TLS_CLIENT_CA": str(pki / "ca.pem"),
        },
    )
    server = await _trainer(settings, telemetry)
    yield server.port
    await server.stop()


async def _list_jobs(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    try:
        await tr_grpc.TrainerServiceStub(channel).ListTrainingJobs(
            tr.ListTrainingJobsRequest(), metadata=metadata, timeout=5
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _admin_token(dev_auth: DevAuth) -> str:
    return dev_auth.issue("mtls-admin", {"*": ["admin"]}, 600)


async def test_valid_client_certificate_gets_through(mtls_server: int, pki: Path, dev_auth: DevAuth) -> None:
    tls = ClientTls.from_files(pki / "ca.pem", pki / "gateway.pem", pki / "gateway.key")
    async with secure_channel(f"localhost:{mtls_server}", tls, token=_admin_token(dev_auth)) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # Transport and token both pass: the servicer answers (unbuilt: UNIMPLEMENTED).
        assert await _list_jobs(channel, ()) == grpc.StatusCode.UNIMPLEMENTED
    # mTLS is transport only: who may call what is still the token's business.
    async with secure_channel(f"127.0.0.1:{mtls_server}", tls) as channel:
        assert await _list_jobs(channel, ()) == grpc.StatusCode.UNAUTHENTICATED
    record("mtls_handshakes", 2)


@pytest.mark.parametrize("client", ["no certificate", "certificate from another CA", "plaintext"])
async def test_handshake_fails_without_a_trusted_client_certificate(
    mtls_server: int, pki: Path, dev_auth: DevAuth, client: str
) -> None:
    metadata = dev_auth.metadata()
    if client == "plaintext":
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{mtls_server}")
    else:
        cert = None if client == "no certificate" else pki / "rogue" / "gateway.pem"
        key = None if client == "no certificate" else pki / "rogue" / "gateway.key"
        channel = secure_channel(f"localhost:{mtls_server}", ClientTls.from_files(pki / "ca.pem", cert, key))
    async with channel:
        # Health too: the handshake fails before any method, open or not, is reached.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await _list_jobs(channel, metadata) == grpc.StatusCode.UNAVAILABLE
    record("mtls_handshakes")


def test_tls_settings_must_come_in_pairs(pki: Path) -> None:
    for env in (
        {"AIF_TRAINER_TLS_CERT": str(pki / "trainer.pem")},
        {"AIF_TRAINER_TLS_CLIENT_CA": str(pki / "ca.pem")},
        {"AIF_TRAINER_TLS_CERT": str(pki / "nope.pem"), "AIF_TRAINER_TLS_KEY": str(pki / "trainer.key")},
    ):
        with pytest.raises(ConfigError, match="AIF_TLS"):
            server_security(load_settings(TrainerSettings, {"AIF_AUTH_MODE": "off", **env}))


# -- the clients a service builds from its settings --------------------------------------


async def test_a_service_calls_an_mtls_server_with_the_client_tls_of_its_settings(
    mtls_server: int, pki: Path, dev_auth: DevAuth
) -> None:
    """The gateway's settings as a deployment sets them: its own pair (AIF_GATEWAY_TLS_*),
    which it also presents as a client, and the CA its servers' certificates come from."""
    settings = load_settings(
        GatewaySettings,
        {
            "AIF_AUTH_MODE": "off",
            "AIF_GATEWAY_TLS_CERT": str(pki / "gateway.pem"),
            "AIF_GATEWAY_TLS_KEY": str(pki / "gateway.key"),
            "AIF_GATEWAY_CLIENT_TLS_CA": str(pki / "ca.pem"),
        },
    )
    tls = client_tls(settings)
    assert tls is not None and tls.cert == (pki / "gateway.pem").read_bytes()
    async with channel(f"127.0.0.1:{mtls_server}", tls, token=_admin_token(dev_auth)) as ch:
        assert await _list_jobs(ch, ()) == grpc.StatusCode.UNIMPLEMENTED
    # The gateway's feature reads: a plain channel (no interceptors), the same TLS.
    async with channel(f"127.0.0.1:{mtls_server}", tls, plain=True) as ch:
        assert await _list_jobs(ch, dev_auth.metadata()) == grpc.StatusCode.UNIMPLEMENTED
    # Without the client block the same settings make a plaintext client: refused.
    plain = load_settings(GatewaySettings, {"AIF_AUTH_MODE": "off"})
    assert client_tls(plain) is None
    async with channel(f"127.0.0.1:{mtls_server}", client_tls(plain), token=_admin_token(dev_auth)) as ch:
        assert await _list_jobs(ch, ()) == grpc.StatusCode.UNAVAILABLE
    record("mtls_handshakes", 3)


async def test_server_name_override_reaches_a_server_whose_certificate_names_another_host(
    pki: Path, dev_auth: DevAuth, telemetry: Telemetry
) -> None:
    # A trainer whose certificate names "trainer" only (as behind a proxy or a service
    # mesh): called at 127.0.0.1, the handshake fails unless the client says which name to expect.
    named = issue_cert(pki / "named", "trainer", hosts=(), ca=CertFiles(pki / "ca.pem", pki / "ca.key"))
    server = await _trainer(
        load_settings(
            TrainerSettings,
            {
                **dev_auth.env(),
                "AIF_TRAINER_TLS_CERT": str(named.cert),
                "AIF_TRAINER_TLS_KEY": str(named.key),
                "AIF_TRAINER_TLS_CLIENT_CA": str(pki / "ca.pem"),
            },
        ),
        telemetry,
    )
    settings = {
        "AIF_AUTH_MODE": "off",
        "AIF_GATEWAY_CLIENT_TLS_CA": str(pki / "ca.pem"),
        "AIF_GATEWAY_CLIENT_TLS_CERT": str(pki / "gateway.pem"),
        "AIF_GATEWAY_CLIENT_TLS_KEY": str(pki / "gateway.key"),
    }
    target = f"127.0.0.1:{server.port}"
    try:
        unnamed = client_tls(load_settings(GatewaySettings, settings))
        async with channel(target, unnamed, token=_admin_token(dev_auth)) as ch:
            assert await _list_jobs(ch, ()) == grpc.StatusCode.UNAVAILABLE
        expect = {**settings, "AIF_GATEWAY_CLIENT_TLS_SERVER_NAME": "trainer"}
        async with channel(
            target, client_tls(load_settings(GatewaySettings, expect)), token=_admin_token(dev_auth)
        ) as ch:
            assert await _list_jobs(ch, ()) == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop()
    record("mtls_handshakes", 2)


def test_client_tls_settings_are_checked_at_start(pki: Path) -> None:
    base = {"AIF_AUTH_MODE": "off"}
    bad = [
        ({"AIF_TRAINER_CLIENT_TLS_CERT": str(pki / "trainer.pem")}, "AIF_CLIENT_TLS_CA"),
        (
            {"AIF_CLIENT_TLS_CA": str(pki / "ca.pem"), "AIF_CLIENT_TLS_CERT": str(pki / "trainer.pem")},
            "together",
        ),
        ({"AIF_CLIENT_TLS_CA": str(pki / "missing.pem")}, "AIF_CLIENT_TLS_CA: cannot read"),
    ]
    for env, message in bad:
        with pytest.raises(ConfigError, match=message):
            client_tls(load_settings(TrainerSettings, {**base, **env}))
    # CA only, no pair of its own: TLS without a client certificate.
    only_ca = client_tls(load_settings(TrainerSettings, {**base, "AIF_CLIENT_TLS_CA": str(pki / "ca.pem")}))
    assert only_ca is not None and only_ca.cert is None and only_ca.key is None
    # The same block, read by a command-line caller from its environment.
    assert env_client_tls({}) is None
    cli = env_client_tls(
        {
            "AIF_CLIENT_TLS_CA": str(pki / "ca.pem"),
            "AIF_CLIENT_TLS_CERT": str(pki / "gateway.pem"),
            "AIF_CLIENT_TLS_KEY": str(pki / "gateway.key"),
        }
    )
    assert cli is not None and cli.key == (pki / "gateway.key").read_bytes()
    with pytest.raises(ConfigError, match="together"):
        env_client_tls({"AIF_CLIENT_TLS_CA": str(pki / "ca.pem"), "AIF_CLIENT_TLS_KEY": str(pki / "x.key")})


async def test_dev_pki_wires_both_ends_of_every_call(
    tmp_path: Path, dev_auth: DevAuth, telemetry: Telemetry
) -> None:
    """What the stack gives each service with AIF_STACK_TLS=mtls: the trainer's port requires
    mutual TLS, the gateway's client (from its own settings) gets through, a service that
    calls no one takes the same environment, and a caller of the stack is let in too."""
    pki = DevPki(tmp_path / "pki").ensure()
    trainer = load_settings(TrainerSettings, {**dev_auth.env(), **pki.env("trainer")})
    assert trainer.tls_client_ca == str(pki.ca)
    server = await _trainer(trainer, telemetry)
    try:
        target = f"127.0.0.1:{server.port}"
        gateway = load_settings(GatewaySettings, {"AIF_AUTH_MODE": "off", **pki.env("gateway")})
        async with channel(target, client_tls(gateway), token=_admin_token(dev_auth)) as ch:
            assert await _list_jobs(ch, ()) == grpc.StatusCode.UNIMPLEMENTED
        # The stack's probes (blocking: run off this loop, which serves the trainer).
        assert await asyncio.to_thread(check, target, tls=pki.client("operator"))
        assert not await asyncio.to_thread(check, target)  # plaintext probe: refused
        # A service with no client block still loads (the shared variable does not apply to it).
        load_settings(RegistrySettings, {"AIF_AUTH_MODE": "off", **pki.env("registry")})
    finally:
        await server.stop()
    record("mtls_handshakes", 3)
