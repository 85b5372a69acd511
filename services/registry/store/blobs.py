"""The database artifact store: blobs in the registry's database, cut into chunks.

What several registry replicas share when they run on one PostgreSQL (setting
``artifact_store=database``): no folder crosses a host. A blob is a header row
(``artifact_blobs``: digest, size, chunk count) and its chunks (``artifact_chunks``,
``bytea`` on PostgreSQL, 1 MiB each by default, far below PostgreSQL's 1 GB field limit
and small enough to stream), written in one transaction: a reader sees all of a blob or
none of it. Two replicas storing the same blob at once do not collide: the header is
inserted with ``ON CONFLICT DO NOTHING`` and only the transaction that inserted it writes
the chunks (the other waits on the key, then finds it there). Every read hashes the
chunks in order and raises :class:`~services.registry.artifacts.ArtifactCorrupted`
when they do not add up to the digest; a new ``put`` of that content repairs it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from libs.errors import NotFound
from libs.sql import Database
from services.registry.artifacts import (
    ArtifactCorrupted,
    ArtifactStore,
    StoredArtifact,
    check_digest,
    digest_for_put,
)
from services.registry.store.sql import _database
from services.registry.store.tables import ArtifactBlobRow, ArtifactChunkRow

DEFAULT_CHUNK = 1 << 20


class SqlArtifactStore(ArtifactStore):
    """Blobs in ``db`` (migrated by the registry store: ``open_store``), ``chunk_bytes`` a row."""

    def __init__(self, db: Database, *, chunk_bytes: int = DEFAULT_CHUNK) -> None:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        self._db = db
        self._chunk = chunk_bytes

    def exists(self, sha256: str) -> bool:
        with _database(f"artifact {sha256}"), self._db.read() as session:
            return session.get(ArtifactBlobRow, sha256) is not None

    def size(self, sha256: str) -> int:
        with _database(f"artifact {sha256}"), self._db.read() as session:
            row = session.get(ArtifactBlobRow, sha256)
        if row is None:
            raise NotFound(f"artifact {sha256} not found")
        return row.size

    def put(self, content: bytes, expected_sha256: str = "") -> StoredArtifact:
        digest = digest_for_put(content, expected_sha256)
        stored = StoredArtifact(digest, len(content))
        with _database(f"artifact {digest}"), self._db.write() as session:
            try:
                self._verified(session, digest)
                return stored
            except (NotFound, ArtifactCorrupted):
                pass
            # A corrupted or partial copy goes (its chunks with it), then the blob is written
            # whole; when a replica inserts it meanwhile, ours waits on the key and does nothing.
            session.execute(delete(ArtifactChunkRow).where(ArtifactChunkRow.sha256 == digest))
            session.execute(delete(ArtifactBlobRow).where(ArtifactBlobRow.sha256 == digest))
            pieces = [content[i : i + self._chunk] for i in range(0, len(content), self._chunk)] or [b""]
            inserted = session.execute(
                self._insert()
                .values(sha256=digest, size=len(content), chunks=len(pieces), created_at=datetime.now(UTC))
                .on_conflict_do_nothing(index_elements=["sha256"])
            )
            if inserted.rowcount:  # type: ignore[attr-defined]
                session.add_all(
                    ArtifactChunkRow(sha256=digest, seq=seq, data=piece) for seq, piece in enumerate(pieces)
                )
        return stored

    def read(self, sha256: str) -> bytes:
        digest = check_digest(sha256, "sha256")
        with _database(f"artifact {digest}"), self._db.read() as session:
            return self._verified(session, digest)

    def _verified(self, session: Session, digest: str) -> bytes:
        header = session.get(ArtifactBlobRow, digest)
        if header is None:
            raise NotFound(f"artifact {digest} not found")
        h = hashlib.sha256()
        parts: list[bytes] = []
        for piece in self._chunks(session, digest):
            h.update(piece)
            parts.append(piece)
        content = b"".join(parts)
        actual = h.hexdigest()
        if actual != digest or len(parts) != header.chunks or len(content) != header.size:
            raise ArtifactCorrupted(digest, actual)
        return content

    @staticmethod
    def _chunks(session: Session, digest: str) -> Iterator[bytes]:
        rows = session.execute(
            select(ArtifactChunkRow.data)
            .where(ArtifactChunkRow.sha256 == digest)
            .order_by(ArtifactChunkRow.seq)
            .execution_options(yield_per=16)
        ).scalars()
        for data in rows:
            yield bytes(data)

    def _insert(self) -> Any:
        insert = pg_insert if self._db.dialect == "postgresql" else sqlite_insert
        return insert(ArtifactBlobRow)

    def count(self) -> int:
        """How many blobs are stored (tests and operators)."""
        with _database("artifacts"), self._db.read() as session:
            return int(session.scalar(select(func.count()).select_from(ArtifactBlobRow)) or 0)
