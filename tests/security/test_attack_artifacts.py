"""Attacks by model artifact: a TorchScript archive is code, and the registry runs it to check it.

Each hostile artifact is uploaded to a real registry over gRPC (UploadArtifact, then
RegisterModelVersion by digest, which loads the artifact and runs one forward pass) and
must be refused with a clear INVALID_ARGUMENT in bounded time, while the registry keeps
answering other calls. The sandbox's child must see none of the host's secrets and no
network.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from aif import infra
from aifactory.registry.v1 import registry_service_pb2 as pb
from aifactory.registry.v1 import registry_service_pb2_grpc as pb_grpc
from libs import artifacts, sandbox
from libs.auth import REVOKED_FILE, DevAuth, JwtAuthenticator, RevocationList, TokenVerifier, load_public_key
from libs.rpc import ServerSecurity
from libs.telemetry import setup_telemetry
from libs.usecase import load_default
from services.registry.app import build
from services.registry.settings import RegistrySettings
from tests.security.conftest import attack
from tests.unit.registry.helpers import AUTO, write_usecases
from tests.unit.registry.kit import model, reference

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

WALL_SECONDS = 10.0
MEMORY_MIB = 1536
# Child start (importing torch on a busy 2-core host) plus the wall-clock limit, with room.
BOUNDED = 90.0


def _scripted(module: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


def forever_model() -> bytes:
    """A forward pass that never ends (a counter that only overflows after 2**63 steps)."""
    import torch

    class Forever(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            i = 0
            while i >= 0:
                i += 1
            return x

    return _scripted(Forever())


def hog_model() -> bytes:
    """A forward pass that allocates without bound (a tensor that doubles until it cannot)."""
    import torch

    class Hog(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.ones(1 << 20)
            while y.numel() > 0:
                y = torch.cat([y, y])
            return x

    return _scripted(Hog())


@dataclass
class Running:
    stub: pb_grpc.RegistryServiceStub
    md: list[tuple[str, str]]


@pytest.fixture
async def registry(kafka: infra.KafkaHandle, new_topic: Any, tmp_path: Path) -> AsyncIterator[Running]:
    auth = DevAuth(tmp_path / "auth").ensure()
    settings = RegistrySettings(
        grpc_port=0,
        metrics_port=0,
        kafka_bootstrap=kafka.bootstrap_servers,
        auth_dir=auth.directory,
        database_url=f"sqlite:///{tmp_path / 'registry.db'}",
        artifact_root=tmp_path / "artifacts",
        export_root=tmp_path / "exports",
        consume=False,
        usecases_topic=await new_topic("attack-usecases"),
        promoted_topic=await new_topic("attack-promoted"),
        sandbox_wall_seconds=WALL_SECONDS,
        sandbox_memory_mib=MEMORY_MIB,
    )
    verifier = TokenVerifier(
        load_public_key(auth.public_key),
        issuer=auth.issuer,
        audience=auth.audience,
        revoked=RevocationList(auth.directory / REVOKED_FILE),
    )
    svc = await build(
        settings,
        setup_telemetry("attack-artifacts"),
        security=ServerSecurity(authenticator=JwtAuthenticator(verifier)),
        usecases=load_default(write_usecases(tmp_path / "usecases")),
    )
    port = await svc.server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    md = [("authorization", f"Bearer {auth.issue('eve', {'*': ['ml-engineer']})}")]
    try:
        yield Running(pb_grpc.RegistryServiceStub(channel), md)
    finally:
        await channel.close()
        await svc.server.stop()
        await svc.close()


async def _register(running: Running, content: bytes, name: str) -> tuple[grpc.StatusCode, str, float]:
    """Upload ``content`` and register it by digest; (status, details, seconds)."""
    digest = await artifacts.upload(running.stub, content, AUTO, metadata=running.md)
    started = time.monotonic()
    try:
        await running.stub.RegisterModelVersion(
            pb.RegisterModelVersionRequest(
                use_case=AUTO,
                model_name=name,
                artifact_sha256=digest,
                reference_profile_content=reference(AUTO),
            ),
            metadata=running.md,
            timeout=BOUNDED,
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or "", time.monotonic() - started
    return grpc.StatusCode.OK, "", time.monotonic() - started


async def _answers(running: Running) -> float:
    """Seconds a cheap call takes (raises if the registry does not answer within 10 s)."""
    started = time.monotonic()
    await running.stub.ListModelVersions(
        pb.ListModelVersionsRequest(use_case=AUTO), metadata=running.md, timeout=10
    )
    return time.monotonic() - started


async def test_a_forward_pass_that_never_ends_is_refused_while_the_registry_answers(
    registry: Running,
) -> None:
    hostile = asyncio.create_task(_register(registry, forever_model(), "forever"))
    await asyncio.sleep(2)
    # Meanwhile: the registry answers other callers, several times.
    meanwhile = [await _answers(registry) for _ in range(3)]
    code, details, seconds = await hostile
    refused = code == grpc.StatusCode.INVALID_ARGUMENT and f"exceeded {WALL_SECONDS:g} s" in details
    attack(succeeded=not refused)
    assert refused, (code, details)
    assert "artifact forward pass" in details and "artifact_sha256" in details
    assert seconds < BOUNDED
    assert max(meanwhile) < 5
    # And after: a good model registers.
    code, details, _ = await _register(registry, model(), "good")
    assert code == grpc.StatusCode.OK, details


async def test_a_forward_pass_that_allocates_without_bound_is_refused(registry: Running) -> None:
    code, details, seconds = await _register(registry, hog_model(), "hog")
    refused = (
        code == grpc.StatusCode.INVALID_ARGUMENT and f"exceeded {MEMORY_MIB / 1024:g} GiB memory" in details
    )
    attack(succeeded=not refused)
    assert refused, (code, details)
    assert seconds < BOUNDED
    assert await _answers(registry) < 5
    code, details, _ = await _register(registry, model(), "good")
    assert code == grpc.StatusCode.OK, details


# ---------------------------------------------------------------- what the child can reach


def report_reach(data: bytes, port: int) -> bytes:
    """Runs in the sandbox: its environment, working directory, and whether it reached ``port``."""
    reached = True
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        reached = False
    return json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "reached": reached}).encode()


def test_the_sandbox_child_sees_no_secret_and_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("AIF_REGISTRY_SERVICE_TOKEN", secret)
    monkeypatch.setenv("AIF_TEST_SIGNING_KEY", secret)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        # A listener this host reaches: the check below can fail.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        out = sandbox.run(f"{__name__}:report_reach", b"", args={"port": port}, preload=())
    seen = json.loads(out.data)
    leaked = [k for k, v in seen["env"].items() if k.startswith("AIF_") or secret in v]
    attack(succeeded=bool(leaked))
    assert not leaked
    attack(succeeded=seen["reached"])
    assert not seen["reached"], "the sandboxed child reached the broker"
    assert out.network_isolated == (os.geteuid() == 0)
    assert Path(seen["cwd"]).name.startswith("aif-sandbox-")
    assert not Path(seen["cwd"]).exists()  # removed after the call


def test_the_evaluator_scores_a_hostile_artifact_in_the_sandbox_too() -> None:
    """The evaluator scores candidates and champions with ``artifact.predict_isolated``."""
    import numpy as np

    from libs.lifecycle import artifact

    matrix = np.zeros((4, 25), dtype=np.float32)
    started = time.monotonic()
    with pytest.raises(sandbox.SandboxRefused) as refused:
        artifact.predict_isolated(forever_model(), matrix, sandbox.Limits(wall_seconds=3))
    attack(succeeded=refused.value.reason != "timeout")
    assert "artifact scoring exceeded 3 s" in refused.value.message
    assert time.monotonic() - started < BOUNDED
    # A well-behaved model scores the same as in process.
    good = model()
    assert np.allclose(artifact.predict_isolated(good, matrix), artifact.predict(artifact.load(good), matrix))


def read_private(data: bytes) -> bytes:
    """Runs in the sandbox: what a hostile artifact would take, a service's private key."""
    try:
        return json.dumps({"read": Path(data.decode()).read_text(), "uid": os.geteuid()}).encode()
    except OSError as exc:
        return json.dumps({"read": None, "error": type(exc).__name__, "uid": os.geteuid()}).encode()


def _others_read(path: Path) -> bool:
    return all(p.stat().st_mode & 0o005 == 0o005 for p in [path, *path.parents] if p != Path("/"))


@pytest.mark.skipif(os.geteuid() != 0, reason="only a child started by root has a user to drop to")
@pytest.mark.skipif(
    not (_others_read(Path(sandbox.ROOT)) and _others_read(Path(sys.prefix))),
    reason="the checkout or virtualenv is closed to other users: the child stays root (documented)",
)
def test_the_sandbox_child_cannot_read_the_services_private_files(tmp_path: Path) -> None:
    private = tmp_path / "service-private"
    private.mkdir(mode=0o700)
    key = private / "checkpoint.key"
    key.write_text(f"key-{uuid.uuid4().hex}")
    key.chmod(0o600)

    out = sandbox.run(f"{__name__}:read_private", str(key).encode(), preload=())

    seen = json.loads(out.data)
    attack(succeeded=seen["read"] is not None)
    assert seen["read"] is None and seen["error"] == "PermissionError"
    assert out.unprivileged and seen["uid"] == 65534
