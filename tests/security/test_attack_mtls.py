"""Attacks on the transport of a factory run with mutual TLS (``AIF_STACK_TLS=mtls``): the
seven services as separate processes, each port (and the gateway's Open Inference Protocol
port) requiring a client certificate from the factory's CA.

A caller in plaintext, one with no client certificate and one whose certificate comes from
another CA, each holding a valid admin token, try every port: none gets past the handshake
(health included). The factory's own callers (a certificate from its CA) get through, and
every service logs that it serves mutual TLS only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aif.stack import SERVICES, Stack
from libs.auth import DevAuth
from libs.auth.tls import DevPki
from libs.rpc import ClientTls, blocking_channel
from tests.security.conftest import attack, record

PORT_OFFSET = 13400  # see aif.stack for the offsets in use

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def stack(kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    stack = Stack(
        tmp_path_factory.mktemp("mtls-logs"),
        port_offset=PORT_OFFSET,
        env={"AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers},
        auth=DevAuth(tmp_path_factory.mktemp("mtls-auth")),
        data_root=tmp_path_factory.mktemp("mtls-data"),
        tls=True,
        pki_dir=tmp_path_factory.mktemp("mtls-pki"),
    )
    stack.start(timeout=120)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> ClientTls:
    """A certificate with the right name from a CA the factory does not trust."""
    return DevPki(tmp_path_factory.mktemp("rogue-pki")).ensure().client("stack-operator")


def _ports(stack: Stack) -> dict[str, str]:
    ports = {name: stack.target(name) for name in SERVICES}
    oip = stack.ports("gateway")[0] + 10  # GatewaySettings.oip_address: grpc_port + 10
    ports["gateway-oip"] = f"127.0.0.1:{oip}"
    return ports


def _health(target: str, tls: ClientTls | None, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    with blocking_channel(target, tls) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), metadata=metadata, timeout=5
            )
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return (
        grpc.StatusCode.OK
        if reply.status == health_pb2.HealthCheckResponse.SERVING
        else grpc.StatusCode.UNKNOWN
    )


def test_every_port_refuses_a_caller_without_a_certificate_from_the_factory_ca(
    stack: Stack, rogue: ClientTls
) -> None:
    admin = stack.metadata("attacker-with-a-token")
    own = stack.client_tls()
    assert own is not None
    callers: dict[str, ClientTls | None] = {
        "plaintext": None,
        "no client certificate": ClientTls(own.ca),
        "certificate from another CA": ClientTls(own.ca, rogue.cert, rogue.key),
    }
    for where, target in _ports(stack).items():
        for who, tls in callers.items():
            code = _health(target, tls, admin)
            attack(succeeded=code != grpc.StatusCode.UNAVAILABLE)
            assert code == grpc.StatusCode.UNAVAILABLE, (where, who, code)
    record("mtls_handshakes", 3 * len(_ports(stack)))


def test_the_factory_callers_get_through_and_every_service_serves_mutual_tls(stack: Stack) -> None:
    tls = stack.client_tls()
    for where, target in _ports(stack).items():
        if where == "gateway-oip":
            continue  # the OIP server has no health service; its handshake is checked above
        assert _health(target, tls, ()) == grpc.StatusCode.OK, where
    record("mtls_handshakes", len(SERVICES))
    for name in SERVICES:
        log = Path(stack.log_dir / f"{name}.log").read_text()
        assert "(mutual TLS)" in log, name
