"""Content-addressed artifacts: named by SHA-256, verified on every read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest

from libs.errors import InvalidArgument, NotFound
from services.registry.artifacts import ArtifactCorrupted, ArtifactStore, check_digest


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    a = store.put(b"model bytes")
    assert a.sha256 == hashlib.sha256(b"model bytes").hexdigest() and a.size == 11
    assert store.put(b"model bytes") == a
    assert store.read(a.sha256) == b"model bytes"
    assert a.uri.endswith(a.sha256)
    assert not list(tmp_path.rglob(".tmp-*"))


def test_tampered_blob_is_refused_on_read_and_repaired_by_a_new_put(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    a = store.put(b"weights v1")
    path = next(p for p in tmp_path.rglob(a.sha256))
    path.write_bytes(b"weights v2")
    with pytest.raises(ArtifactCorrupted) as info:
        store.read(a.sha256)
    assert info.value.code is grpc.StatusCode.DATA_LOSS
    assert hashlib.sha256(b"weights v2").hexdigest() in info.value.message
    with pytest.raises(ArtifactCorrupted):
        store.copy_to(a.sha256, tmp_path / "out" / "model.pt")
    assert not (tmp_path / "out" / "model.pt").exists()
    store.put(b"weights v1")
    assert store.read(a.sha256) == b"weights v1"


def test_unknown_and_malformed_digests(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(NotFound):
        store.read("0" * 64)
    with pytest.raises(InvalidArgument) as info:
        store.read("not-a-digest")
    assert info.value.field == "sha256"
    with pytest.raises(InvalidArgument) as info:
        store.put(b"x", expected_sha256="0" * 64)
    assert info.value.field == "expected_sha256"
    assert check_digest(" " + "A" * 64, "f") == "a" * 64
