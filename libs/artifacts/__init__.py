"""Artifacts over gRPC: the registry is the artifact server, every byte checked by its digest.

The registry's ``UploadArtifact`` and ``DownloadArtifact`` stream a content-addressed blob
(named by its SHA-256) in chunks. Both ends check the digest:

- upload: the client declares the digest in the first message (:func:`upload` always
  does); the registry hashes what arrived and refuses a mismatch (:class:`DigestMismatch`),
  storing nothing;
- download: the registry hashes the stored blob before sending it (``DATA_LOSS`` when
  it is corrupted at rest), and the client hashes what arrived (:func:`download` raises
  :class:`DigestMismatch`), so a blob damaged in transit or by a proxy never passes.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence

import grpc

from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from libs.errors import AifError

CHUNK = 1 << 20
Metadata = Sequence[tuple[str, str]]


class DigestMismatch(AifError):
    """Bytes that do not hash to the digest they travel under (upload or download)."""

    code = grpc.StatusCode.DATA_LOSS

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: content hashes to sha256 {actual}, not the declared {expected}")
        self.expected, self.actual = expected, actual


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def check(content: bytes, expected: str, what: str) -> bytes:
    """``content`` when it hashes to ``expected``; :class:`DigestMismatch` otherwise."""
    actual = sha256_hex(content)
    if actual != expected:
        raise DigestMismatch(what, expected, actual)
    return content


async def download(
    stub: reg_grpc.RegistryServiceStub,
    sha256: str,
    *,
    timeout: float | None = 60.0,
    metadata: Metadata | None = None,
) -> bytes:
    """The blob ``sha256`` from the registry, verified here (:class:`DigestMismatch`). The
    registry's own refusals (NOT_FOUND; DATA_LOSS when corrupted at rest) and transport
    errors are raised as they come (``grpc.aio.AioRpcError``): the caller types them."""
    parts = [
        message.chunk
        async for message in stub.DownloadArtifact(
            reg_pb.DownloadArtifactRequest(sha256=sha256), timeout=timeout, metadata=metadata
        )
    ]
    return check(b"".join(parts), sha256, f"artifact {sha256} as downloaded")


async def upload(
    stub: reg_grpc.RegistryServiceStub,
    content: bytes,
    use_case: str,
    *,
    timeout: float | None = 60.0,
    metadata: Metadata | None = None,
    declared: str = "",
) -> str:
    """Streams ``content`` to the registry under its digest (``declared`` overrides it:
    tests); returns the digest the registry stored it under. gRPC errors as for
    :func:`download` (a mismatch the registry found is DATA_LOSS)."""
    digest = declared or sha256_hex(content)

    async def chunks() -> AsyncIterator[reg_pb.UploadArtifactRequest]:
        yield reg_pb.UploadArtifactRequest(chunk=content[:CHUNK], expected_sha256=digest, use_case=use_case)
        for start in range(CHUNK, len(content), CHUNK):
            yield reg_pb.UploadArtifactRequest(chunk=content[start : start + CHUNK])

    response = await stub.UploadArtifact(chunks(), timeout=timeout, metadata=metadata)
    if response.sha256 != digest:
        raise DigestMismatch("artifact upload (the registry's answer)", digest, response.sha256)
    return str(response.sha256)


__all__ = ["CHUNK", "DigestMismatch", "check", "download", "sha256_hex", "upload"]
