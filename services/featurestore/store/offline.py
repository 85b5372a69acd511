"""Append-only parquet datasets, one directory each, deduplicated by a key column.

Feast's file offline store would rewrite a whole file per write; here every micro-batch
becomes one new file, written under ``_staging/`` and renamed into place, so a reader
(Feast's dask reader, pyarrow) sees all of a batch or none of it, and ignores the
staging area (names starting with ``_`` are skipped). Many small files make reads slow:
once ``compact_at`` small files pile up they are merged into one.

Deduplication makes writes idempotent: a replayed record (at-least-once delivery)
whose key is already stored is skipped. The keys of every file are loaded when the
dataset is opened, so this holds across restarts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

STAGING = "_staging"
# Files with fewer rows than this are "small" and get merged by compaction.
SMALL_ROWS = 100_000


class ParquetDataset:
    def __init__(self, directory: Path, schema: pa.Schema, key: str, *, compact_at: int = 32) -> None:
        self.directory = directory
        self.schema = schema
        self.key = key
        self.compact_at = compact_at
        self._keys: set[str] = set()
        self._small: dict[Path, int] = {}
        # Held by compaction (which briefly has rows in two files) and by readers that
        # need a consistent view (training sets); appends do not need it.
        self.lock = threading.RLock()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / STAGING).mkdir(exist_ok=True)
        self._load()

    def _files(self) -> list[Path]:
        return sorted(p for p in self.directory.glob("*.parquet"))

    def _load(self) -> None:
        for path in self._files():
            meta = pq.read_metadata(path)
            if meta.num_rows < SMALL_ROWS:
                self._small[path] = meta.num_rows
            keys = pq.read_table(path, columns=[self.key]).column(self.key)
            self._keys.update(keys.to_pylist())
        for leftover in (self.directory / STAGING).glob("*"):
            leftover.unlink()  # a write that died before its rename: never visible, never counted
        log.debug("%s: %d keys in %d files", self.directory, len(self._keys), len(self._files()))

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def append(self, table: pa.Table) -> int:
        """Write the rows whose key is new (first of each key wins); returns rows written."""
        keys = table.column(self.key).to_pylist()
        keep: list[int] = []
        batch: set[str] = set()
        for i, k in enumerate(keys):
            if k not in self._keys and k not in batch:
                keep.append(i)
                batch.add(k)
        if not keep:
            return 0
        if len(keep) < len(keys):
            table = table.take(pa.array(keep))
        path = self._write(table.cast(self.schema))
        self._keys.update(batch)
        self._small[path] = table.num_rows
        if len(self._small) >= self.compact_at:
            self.compact()
        return len(keep)

    def _write(self, table: pa.Table) -> Path:
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        staged = self.directory / STAGING / name
        pq.write_table(table, staged)
        final = self.directory / name
        os.replace(staged, final)
        return final

    def compact(self) -> None:
        """Merge the small files into one (under the lock: rows briefly exist twice)."""
        with self.lock:
            small = sorted(self._small)
            if len(small) < 2:
                return
            merged = pa.concat_tables([pq.read_table(p, schema=self.schema) for p in small])
            path = self._write(merged)
            for p in small:
                p.unlink()
            self._small = {path: merged.num_rows} if merged.num_rows < SMALL_ROWS else {}
            log.info("compacted %d files (%d rows) in %s", len(small), merged.num_rows, self.directory)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Hold compaction off while a reader lists and reads the files."""
        with self.lock:
            yield

    def read(self, columns: list[str] | None = None, filter: pc.Expression | None = None) -> pa.Table:
        with self.lock:
            files = [str(p) for p in self._files()]
            if not files:
                return self.schema.empty_table().select(columns or self.schema.names)
            return ds.dataset(files, schema=self.schema, format="parquet").to_table(
                columns=columns, filter=filter
            )
