"""Mutual TLS between services: a client with a certificate from the CA gets through, a client
without one (or with one from another CA) fails the handshake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aifactory.trainer.v1 import trainer_service_pb2 as tr
from aifactory.trainer.v1 import trainer_service_pb2_grpc as tr_grpc
from libs.auth import DevAuth, server_security
from libs.auth.tls import create_ca, issue_cert
from libs.rpc import ClientTls, RpcServer, secure_channel
from libs.settings import load_settings
from libs.telemetry import Telemetry
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
    server = RpcServer("127.0.0.1:0", telemetry, security=server_security(settings))
    server.add_service(
        tr_grpc.add_TrainerServiceServicer_to_server, tr_grpc.TrainerServiceServicer(), SERVICE
    )
    port = await server.start()
    yield port
    await server.stop()


async def _list_jobs(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    try:
        await tr_grpc.TrainerServiceStub(channel).ListTrainingJobs(
            tr.ListTrainingJobsRequest(), metadata=metadata, timeout=5
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_valid_client_certificate_gets_through(mtls_server: int, pki: Path, dev_auth: DevAuth) -> None:
    tls = ClientTls.from_files(pki / "ca.pem", pki / "gateway.pem", pki / "gateway.key")
    service_token = dev_auth.issue("service:gateway", {"*": ["service"]}, 600)
    async with secure_channel(f"localhost:{mtls_server}", tls, token=service_token) as channel:
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
    from libs.errors import ConfigError

    for env in (
        {"AIF_TRAINER_TLS_CERT": str(pki / "trainer.pem")},
        {"AIF_TRAINER_TLS_CLIENT_CA": str(pki / "ca.pem")},
        {"AIF_TRAINER_TLS_CERT": str(pki / "nope.pem"), "AIF_TRAINER_TLS_KEY": str(pki / "trainer.key")},
    ):
        with pytest.raises(ConfigError, match="AIF_TLS"):
            server_security(load_settings(TrainerSettings, {"AIF_AUTH_MODE": "off", **env}))
