"""Security suites: shared fixtures, and the line of suite sizes printed at the end of the run."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from aif.infra import KafkaSecureHandle, ensure_kafka_secure
from libs.auth import DevAuth, JwtAuthenticator, RevocationList, TableAuthorizer, TokenVerifier
from libs.auth.tokens import REVOKED_FILE, load_public_key
from libs.rpc import RpcServer, ServerSecurity, insecure_channel
from libs.telemetry import Telemetry, setup_telemetry
from tests.security.grpc_targets import services

ROOT = Path(__file__).resolve().parents[2]
SIZES_FILE = ROOT / "build" / "test-security" / "sizes.txt"

# What the suites tried, by kind; printed (and written to SIZES_FILE) at the end.
SIZES: Counter[str] = Counter()
_LABELS = [
    ("permission_checks", "permission checks"),
    ("token_cases", "token cases"),
    ("mtls_handshakes", "mTLS handshakes"),
    ("kafka_acl_checks", "broker ACL checks"),
    ("log_lines_searched", "log lines searched for tokens"),
    ("privacy_cases", "privacy cases"),
    ("fuzz_messages", "fuzz messages tried"),
    ("fuzz_calls", "fuzz calls"),
    ("hostile_topic_messages", "hostile topic messages tried"),
    ("log_files_searched", "run log files searched"),
    ("log_lines_scanned", "run log lines searched for tokens, secrets and personal data"),
    ("attacks_tried", "attacks tried"),
]


def record(kind: str, n: int = 1) -> None:
    SIZES[kind] += n


def attack(succeeded: bool, n: int = 1) -> None:
    """Counts ``n`` attacks of the attacks suite (tests/security/test_attack_*.py); the sizes
    line reports how many were tried and how many succeeded. Call it with the outcome
    before asserting on it, so a failing attack test still counts its success."""
    SIZES["attacks_tried"] += n
    if succeeded:
        SIZES["attacks_succeeded"] += n


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SIZES:
        return
    parts = [f"{SIZES[k]} {label}" for k, label in _LABELS if SIZES[k]]
    if SIZES["attacks_tried"]:
        # Always shown once attacks ran: the figure a reader looks for is the zero.
        parts.append(f"{SIZES['attacks_succeeded']} attacks that succeeded")
    line = "security: " + ", ".join(parts)
    terminalreporter.write_line(line)
    SIZES_FILE.parent.mkdir(parents=True, exist_ok=True)
    SIZES_FILE.write_text(line + "\n")


@pytest.fixture(scope="session", autouse=True)
def _fresh_sizes_file() -> Iterator[None]:
    SIZES_FILE.unlink(missing_ok=True)
    yield


@pytest.fixture(scope="session")
def kafka_secure() -> Iterator[KafkaSecureHandle]:
    """The secure Kafka profile (SASL_SSL, ACLs) with the two shipped use cases, started once
    for the suites that attack or check it."""
    handle = ensure_kafka_secure(use_cases=["loan_approval", "image_segments"])
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def dev_auth(tmp_path_factory: pytest.TempPathFactory) -> DevAuth:
    """A throwaway key pair (never the developer's build/auth)."""
    return DevAuth(tmp_path_factory.mktemp("auth")).ensure()


@pytest.fixture(scope="session")
def telemetry() -> Telemetry:
    return setup_telemetry("security-tests")


def jwt_security(auth: DevAuth, authorizer: TableAuthorizer | None = None) -> ServerSecurity:
    """What server_security(settings) builds for auth_mode=jwt, on ``auth``'s folder."""
    verifier = TokenVerifier(
        load_public_key(auth.public_key),
        issuer=auth.issuer,
        audience=auth.audience,
        revoked=RevocationList(auth.directory / REVOKED_FILE),
    )
    return ServerSecurity(JwtAuthenticator(verifier), authorizer or TableAuthorizer())


ServeAll = Callable[..., Awaitable[grpc.aio.Channel]]


@pytest.fixture
async def serve_all(dev_auth: DevAuth, telemetry: Telemetry) -> AsyncIterator[ServeAll]:
    """Starts one in-process server with every service's generated base servicer behind the
    shared interceptor (unbuilt methods answer UNIMPLEMENTED once auth lets them through)."""
    servers: list[RpcServer] = []
    channels: list[grpc.aio.Channel] = []

    async def start(
        security: ServerSecurity | None = None, servicers: dict[str, object] | None = None
    ) -> grpc.aio.Channel:
        server = RpcServer("127.0.0.1:0", telemetry, security=security or jwt_security(dev_auth))
        for svc in services():
            servicer = (servicers or {}).get(svc.full_name) or svc.servicer()
            server.add_service(svc.add_to_server, servicer, svc.full_name)
        port = await server.start()
        servers.append(server)
        channels.append(insecure_channel(f"127.0.0.1:{port}"))
        return channels[-1]

    yield start
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop()
