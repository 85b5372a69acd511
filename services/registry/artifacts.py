"""Content-addressed artifact store: blobs named by their SHA-256, checked on every read.

:class:`ArtifactStore` is the contract; two backends implement it and one test suite
runs against both (``tests/unit/registry/test_artifacts.py``):

- :class:`FileArtifactStore` (the embedded default, setting ``artifact_store=files``): a
  local folder, ``<root>/sha256/<first 2 hex>/<64 hex>``. A blob is written to a temporary
  file in the same folder, fsynced and renamed into place, so a reader never sees half a
  blob and a crash leaves at most a stray temporary file;
- :class:`~services.registry.store.blobs.SqlArtifactStore` (``artifact_store=database``):
  chunked rows in the registry's own database, the store several registry replicas on
  PostgreSQL share.

Every read hashes what it read and raises :class:`ArtifactCorrupted` (gRPC ``DATA_LOSS``)
when it does not match the name; a write whose content does not hash to the digest the
caller declared raises :class:`~libs.artifacts.DigestMismatch` and stores nothing.
Nothing outside the registry reads a store: other services go through its gRPC API.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import grpc

from libs.artifacts import DigestMismatch
from libs.errors import AifError, InvalidArgument, NotFound

SHA256 = re.compile(r"^[0-9a-f]{64}$")
URI_PREFIX = "aif-artifact://sha256/"
_CHUNK = 1 << 20


class ArtifactCorrupted(AifError):
    """A stored blob no longer matches its digest."""

    code = grpc.StatusCode.DATA_LOSS

    def __init__(self, sha256: str, actual: str) -> None:
        super().__init__(f"artifact {sha256} is corrupted: its content hashes to {actual}")
        self.sha256, self.actual = sha256, actual


@dataclass(frozen=True)
class StoredArtifact:
    sha256: str
    size: int

    @property
    def uri(self) -> str:
        return URI_PREFIX + self.sha256


def check_digest(value: str, field: str) -> str:
    """A lower-case hex SHA-256, or InvalidArgument naming ``field``."""
    digest = value.strip().lower()
    if not SHA256.match(digest):
        raise InvalidArgument(field, "must be a SHA-256 digest (64 hex characters)")
    return digest


def digest_of_uri(uri: str) -> str:
    return uri[len(URI_PREFIX) :] if uri.startswith(URI_PREFIX) else ""


def digest_for_put(content: bytes, expected_sha256: str) -> str:
    """The digest ``content`` is stored under; :class:`DigestMismatch` when the caller
    declared another one."""
    digest = hashlib.sha256(content).hexdigest()
    if expected_sha256 and expected_sha256 != digest:
        raise DigestMismatch("expected_sha256", expected_sha256, digest)
    return digest


class ArtifactStore(ABC):
    """Blobs by SHA-256. Methods are synchronous (callers run them in threads)."""

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def put(self, content: bytes, expected_sha256: str = "") -> StoredArtifact:
        """Store ``content``; idempotent (a corrupted copy is replaced). ``expected_sha256``,
        when given, must be its digest (:class:`~libs.artifacts.DigestMismatch`)."""

    @abstractmethod
    def read(self, sha256: str) -> bytes:
        """The blob's bytes, verified; NotFound or ArtifactCorrupted otherwise."""

    @abstractmethod
    def size(self, sha256: str) -> int:
        """The stored size in bytes (NotFound when absent); not verified."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to close
        """Release what the store holds."""

    def copy_to(self, sha256: str, dest: Path) -> None:
        """Write the verified blob to ``dest`` (atomically, via a temporary file beside it)."""
        content = self.read(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class FileArtifactStore(ArtifactStore):
    """Blobs as files under ``root`` (one host; see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def put(self, content: bytes, expected_sha256: str = "") -> StoredArtifact:
        digest = digest_for_put(content, expected_sha256)
        path = self._path(digest)
        if path.is_file() and self._hash_file(path) == digest:
            return StoredArtifact(digest, len(content))
        # Missing, or a corrupted copy: (re)write it atomically.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredArtifact(digest, len(content))

    def read(self, sha256: str) -> bytes:
        path = self._path(check_digest(sha256, "sha256"))
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"artifact {sha256} not found") from None
        actual = hashlib.sha256(content).hexdigest()
        if actual != sha256:
            raise ArtifactCorrupted(sha256, actual)
        return content

    def size(self, sha256: str) -> int:
        try:
            return self._path(sha256).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"artifact {sha256} not found") from None

    @staticmethod
    def _hash_file(path: Path) -> str:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()
