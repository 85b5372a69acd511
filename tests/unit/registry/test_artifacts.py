"""Content-addressed artifacts: named by SHA-256, verified on every read, one suite for every
backend (a folder, and chunked rows in the registry's database: SQLite here, PostgreSQL in
tests/integration/test_registry.py, which collects these tests with its own ``blobs``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select, update

from libs.artifacts import DigestMismatch
from libs.errors import InvalidArgument, NotFound
from services.registry.artifacts import ArtifactCorrupted, ArtifactStore, FileArtifactStore, check_digest
from services.registry.store import SqlStore, open_store
from services.registry.store.blobs import SqlArtifactStore
from services.registry.store.tables import ArtifactChunkRow


@dataclass
class Blobs:
    """A store under test, and how to damage a stored blob behind its back."""

    store: ArtifactStore
    tamper: Callable[[str, bytes], None]
    # How many pieces a blob is stored in (database backends), else None.
    pieces: Callable[[str], int] | None = None


def file_blobs(root: Path) -> Blobs:
    store = FileArtifactStore(root)

    def tamper(sha256: str, content: bytes) -> None:
        next(root.rglob(sha256)).write_bytes(content)

    return Blobs(store, tamper)


def database_blobs(sql: SqlStore, chunk_bytes: int) -> Blobs:
    store = SqlArtifactStore(sql.db, chunk_bytes=chunk_bytes)

    def tamper(sha256: str, content: bytes) -> None:
        with sql.db.write() as session:
            session.execute(
                update(ArtifactChunkRow)
                .where(ArtifactChunkRow.sha256 == sha256, ArtifactChunkRow.seq == 0)
                .values(data=content)
            )

    def pieces(sha256: str) -> int:
        with sql.db.read() as session:
            return len(
                session.scalars(select(ArtifactChunkRow.seq).where(ArtifactChunkRow.sha256 == sha256)).all()
            )

    return Blobs(store, tamper, pieces)


@pytest.fixture(params=["files", "database"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Blobs]:
    if request.param == "files":
        yield file_blobs(tmp_path / "artifacts")
        return
    sql = open_store(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        yield database_blobs(sql, chunk_bytes=1024)
    finally:
        sql.close()


def test_put_is_content_addressed_and_idempotent(blobs: Blobs, tmp_path: Path) -> None:
    store = blobs.store
    a = store.put(b"model bytes")
    assert a.sha256 == hashlib.sha256(b"model bytes").hexdigest() and a.size == 11
    assert store.put(b"model bytes") == a
    assert store.read(a.sha256) == b"model bytes"
    assert store.exists(a.sha256) and store.size(a.sha256) == 11
    assert a.uri.endswith(a.sha256)
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_large_blob_round_trips_in_many_pieces(blobs: Blobs, tmp_path: Path) -> None:
    content = os.urandom(5 * 1024 * 1024 + 123)  # 5 MiB and a bit: several chunks on any backend
    stored = blobs.store.put(content, hashlib.sha256(content).hexdigest())
    assert blobs.store.read(stored.sha256) == content and stored.size == len(content)
    if blobs.pieces is not None:
        assert blobs.pieces(stored.sha256) > 1
    blobs.store.copy_to(stored.sha256, tmp_path / "out" / "model.pt")
    assert (tmp_path / "out" / "model.pt").read_bytes() == content


def test_tampered_blob_is_refused_on_read_and_repaired_by_a_new_put(blobs: Blobs, tmp_path: Path) -> None:
    store = blobs.store
    a = store.put(b"weights v1")
    blobs.tamper(a.sha256, b"weights v2")
    with pytest.raises(ArtifactCorrupted) as info:
        store.read(a.sha256)
    assert info.value.code is grpc.StatusCode.DATA_LOSS
    assert hashlib.sha256(b"weights v2").hexdigest() in info.value.message
    with pytest.raises(ArtifactCorrupted):
        store.copy_to(a.sha256, tmp_path / "out" / "model.pt")
    assert not (tmp_path / "out" / "model.pt").exists()
    store.put(b"weights v1")
    assert store.read(a.sha256) == b"weights v1"


def test_a_content_under_another_digest_is_refused_and_not_stored(blobs: Blobs) -> None:
    claimed = hashlib.sha256(b"what the client meant").hexdigest()
    with pytest.raises(DigestMismatch) as info:
        blobs.store.put(b"what arrived", expected_sha256=claimed)
    assert info.value.code is grpc.StatusCode.DATA_LOSS
    assert (info.value.expected, info.value.actual) == (claimed, hashlib.sha256(b"what arrived").hexdigest())
    assert not blobs.store.exists(info.value.actual) and not blobs.store.exists(claimed)


def test_unknown_and_malformed_digests(blobs: Blobs) -> None:
    store = blobs.store
    with pytest.raises(NotFound):
        store.read("0" * 64)
    with pytest.raises(NotFound):
        store.size("0" * 64)
    assert not store.exists("0" * 64)
    with pytest.raises(InvalidArgument) as info:
        store.read("not-a-digest")
    assert info.value.field == "sha256"
    assert check_digest(" " + "A" * 64, "f") == "a" * 64
