"""Content-addressed artifact store: files named by their SHA-256, checked on every read.

Layout: ``<root>/sha256/<first 2 hex>/<64 hex>``. A blob is written to a temporary
file in the same folder, fsynced and renamed into place, so a reader never sees half a
blob and a crash leaves at most a stray temporary file. Every read hashes what it read
and raises :class:`ArtifactCorrupted` (gRPC ``DATA_LOSS``) when it does not match the
name. In production the same interface sits on an object store.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc

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


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def put(self, content: bytes, expected_sha256: str = "") -> StoredArtifact:
        """Store ``content``; idempotent. ``expected_sha256`` must match when given."""
        digest = hashlib.sha256(content).hexdigest()
        if expected_sha256 and expected_sha256 != digest:
            raise InvalidArgument("expected_sha256", f"content hashes to {digest}, not {expected_sha256}")
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
        """The blob's bytes, verified; NotFound or ArtifactCorrupted otherwise."""
        path = self._path(check_digest(sha256, "sha256"))
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"artifact {sha256} not found") from None
        actual = hashlib.sha256(content).hexdigest()
        if actual != sha256:
            raise ArtifactCorrupted(sha256, actual)
        return content

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
