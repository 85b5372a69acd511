"""The versioned raw dataset: every accepted record, as partitioned parquet, the root of lineage.

Layout under the data dir (one folder per use case)::

    <data_dir>/<use_case>/_manifest.jsonl
    <data_dir>/<use_case>/date=YYYY-MM-DD/part-k-<topic>-<partition>-<first>-<last>.<hash>.parquet
    <data_dir>/<use_case>/date=YYYY-MM-DD/part-g.<hash>.parquet          (gRPC batches)

A file is *staged* (written) before the Kafka transaction that publishes its records
and *published* (appended to the manifest) after it commits; only published files
belong to the dataset. Each published batch makes a new version, whose id is the
content hash of the whole dataset: sha256 over the sorted sha256s of its files. The
version a record belongs to is therefore known before its transaction commits, and
stamped on the record.

Exactly once from Kafka: a file covers one contiguous offset range of one source
partition, named in the file, and its records' offsets are committed in the same
transaction as its records. When a partition is assigned, :meth:`RawDataset.reconcile`
compares every unpublished file of that partition with the committed offset: below
it, the transaction committed but the process died before publishing, so the file is
published now; at or above it, the transaction never committed, so the file is
deleted (the records will be read again). Hence a crash neither loses nor doubles a
record in the dataset.

gRPC batches have no offsets: their files are published before their transaction
commits (a retry after a failure may store a record twice, under the same record
id). :meth:`RawDataset.read` therefore keeps the first row of each record id.

Columns: ``_record_id``, ``_entity_id``, ``_event_time``, ``_ingested_at``,
``_source`` (``topic/partition/offset`` or ``grpc:<subject>``) and one column per
declared field, personal data masked as in the records topic (``pii: hash`` as its
salted hash, ``pii: drop`` absent). Durable against a process crash; files are not
fsynced, so not against power loss.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from libs.errors import NotFound
from libs.usecase import UseCase, UseCases
from services.ingestion.pii import Privacy
from services.ingestion.records import Outcome

log = logging.getLogger(__name__)

MANIFEST = "_manifest.jsonl"
_ARROW = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
_TS = pa.timestamp("us", tz="UTC")
META_COLUMNS = [
    ("_record_id", pa.string()),
    ("_entity_id", pa.string()),
    ("_event_time", _TS),
    ("_ingested_at", _TS),
    ("_source", pa.string()),
]


@dataclass(frozen=True)
class DataFile:
    """One parquet file of the dataset; ``path`` is relative to the use case's folder."""

    path: str
    sha256: str
    rows: int
    min_event_time: str
    max_event_time: str


@dataclass(frozen=True)
class DatasetVersion:
    use_case: str
    version: str
    parent: str
    uri: str
    rows: int
    file_count: int
    schema_version: str
    created_at: datetime | None = None
    min_event_time: datetime | None = None
    max_event_time: datetime | None = None


def version_of(hashes: Iterable[str]) -> str:
    """The content hash of a set of files: sha256 over their sorted sha256s."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def kafka_file_name(topic: str, partition: int, first: int, last: int) -> str:
    """The name stem of a file holding offsets first..last; :meth:`RawDataset.stage` adds its hash."""
    return f"part-k-{topic}-{partition}-{first:012d}-{last:012d}"


def _kafka_range(name: str) -> tuple[str, int, int, int] | None:
    """(topic, partition, first, last) of a Kafka file name; None for other files."""
    if not (name.startswith("part-k-") and name.endswith(".parquet")):
        return None
    stem = name[len("part-k-") : -len(".parquet")].rsplit(".", 1)[0]  # drop the content hash
    parts = stem.rsplit("-", 3)
    if len(parts) != 4:
        return None
    try:
        return parts[0], int(parts[1]), int(parts[2]), int(parts[3])
    except ValueError:
        return None


class _Log:
    """What one use case's manifest says: the published files and the latest version."""

    def __init__(self, folder: Path, usecase: UseCase) -> None:
        self.folder = folder
        self.path = folder / MANIFEST
        self.schema_version = f"{usecase.name}@{usecase.version}"
        self.files: dict[str, DataFile] = {}
        self.latest: DatasetVersion | None = None
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        good = 0
        with self.path.open("rb") as fh:
            for raw in fh:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    break  # a line cut short by a crash: everything after it is dropped
                if not raw.endswith(b"\n"):
                    break
                good += len(raw)
                self._apply(entry)
        if good != self.path.stat().st_size:
            log.warning("%s: dropping a partial last line", self.path)
            os.truncate(self.path, good)

    def _apply(self, entry: dict[str, Any]) -> None:
        for f in entry["added"]:
            self.files[f["path"]] = DataFile(**f)
        self.latest = _version_from(entry, self.folder)

    def append(self, added: Sequence[DataFile], now: datetime) -> DatasetVersion:
        files = {**self.files, **{f.path: f for f in added}}
        times = [datetime.fromisoformat(t) for f in added for t in (f.min_event_time, f.max_event_time) if t]
        if self.latest and self.latest.min_event_time and self.latest.max_event_time:
            times += [self.latest.min_event_time, self.latest.max_event_time]
        entry = {
            "version": version_of(f.sha256 for f in files.values()),
            "parent": self.latest.version if self.latest else "",
            "created_at": now.isoformat(),
            "schema_version": self.schema_version,
            "rows": sum(f.rows for f in files.values()),
            "file_count": len(files),
            "min_event_time": min(times).isoformat() if times else "",
            "max_event_time": max(times).isoformat() if times else "",
            "added": [asdict(f) for f in added],
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._apply(entry)
        assert self.latest is not None
        return self.latest

    def entries(self) -> Iterable[dict[str, Any]]:
        if self.path.exists():
            with self.path.open("rb") as fh:
                for raw in fh:
                    if raw.endswith(b"\n"):
                        yield json.loads(raw)


def _version_from(entry: Mapping[str, Any], folder: Path) -> DatasetVersion:
    def ts(text: str) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    return DatasetVersion(
        use_case=folder.name,
        version=entry["version"],
        parent=entry["parent"],
        uri=folder.as_uri(),
        rows=entry["rows"],
        file_count=entry["file_count"],
        schema_version=entry["schema_version"],
        created_at=ts(entry["created_at"]),
        min_event_time=ts(entry["min_event_time"]),
        max_event_time=ts(entry["max_event_time"]),
    )


class RawDataset:
    """The raw datasets of every use case under one data dir (one writer process per dir)."""

    def __init__(self, root: Path, usecases: Mapping[str, UseCase], privacy: Mapping[str, Privacy]) -> None:
        self.root = root
        self._usecases = UseCases(usecases)
        self._logs = {name: _Log(root / name, uc) for name, uc in usecases.items()}
        self._columns: dict[str, list[tuple[str, pa.DataType]]] = {}
        for name, uc in usecases.items():
            kept = [(f, privacy[name].kept_type(f, spec.type)) for f, spec in uc.fields.items()]
            self._columns[name] = [(f, _ARROW[t]) for f, t in kept if t is not None]
        # Held from "which version will this batch make" to "published", so the version
        # stamped on records is the one that appears in the manifest.
        self.lock = asyncio.Lock()

    def take_up(self, uc: UseCase, privacy: Privacy) -> None:
        """Keep the dataset of a use case applied while running (hold :attr:`lock`): a new one
        starts its folder; a new version of one keeps its files (its columns are the same:
        a change of the record schema needs a new use case, see libs.usecase.compat)."""
        kept = [(f, privacy.kept_type(f, spec.type)) for f, spec in uc.fields.items()]
        self._columns[uc.name] = [(f, _ARROW[t]) for f, t in kept if t is not None]
        self._logs[uc.name] = _Log(self.root / uc.name, uc)
        self._usecases[uc.name] = uc

    def _log(self, use_case: str) -> _Log:
        self._usecases.require(use_case)  # NOT_FOUND naming the use case when it is not loaded
        return self._logs[use_case]

    def schema(self, use_case: str) -> pa.Schema:
        return pa.schema(META_COLUMNS + self._columns[use_case])

    def uri(self, use_case: str) -> str:
        return self._log(use_case).folder.as_uri()

    # -- writing -------------------------------------------------------------------------

    def stage(
        self,
        use_case: str,
        outcomes: Sequence[Outcome],
        sources: Sequence[str],
        ingested_at: datetime,
        name: str | None = None,
    ) -> list[DataFile]:
        """Write accepted ``outcomes`` as one file per event date; nothing is published yet.

        ``name`` is the stem of a Kafka file (see :func:`kafka_file_name`). Every name ends
        with the file's content hash, so a published file is never overwritten, even when
        the same offsets are ingested again (say, after a consumer group reset).
        """
        by_date: dict[str, list[int]] = {}
        for i, o in enumerate(outcomes):
            assert o.event_time is not None
            by_date.setdefault(o.event_time.date().isoformat(), []).append(i)
        folder = self._log(use_case).folder
        staged = []
        for day, idx in sorted(by_date.items()):
            data = self._parquet(use_case, [outcomes[i] for i in idx], [sources[i] for i in idx], ingested_at)
            digest = hashlib.sha256(data).hexdigest()
            rel = f"date={day}/{name or 'part-g'}.{digest[:16]}.parquet"
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            times = [t for t in (outcomes[i].event_time for i in idx) if t is not None]
            staged.append(DataFile(rel, digest, len(idx), min(times).isoformat(), max(times).isoformat()))
        return staged

    def _parquet(
        self, use_case: str, outcomes: Sequence[Outcome], sources: Sequence[str], ingested_at: datetime
    ) -> bytes:
        columns: dict[str, list[Any]] = {
            "_record_id": [o.record_id for o in outcomes],
            "_entity_id": [o.entity_id for o in outcomes],
            "_event_time": [o.event_time for o in outcomes],
            "_ingested_at": [ingested_at] * len(outcomes),
            "_source": list(sources),
        }
        for name, _ in self._columns[use_case]:
            columns[name] = [o.values.get(name) for o in outcomes]
        table = pa.Table.from_pydict(columns, schema=self.schema(use_case))
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return bytes(sink.getvalue())

    def next_version(self, use_case: str, staged: Iterable[DataFile]) -> str:
        """The version publishing ``staged`` will make."""
        files = {
            **{p: f.sha256 for p, f in self._log(use_case).files.items()},
            **{f.path: f.sha256 for f in staged},
        }
        return version_of(files.values())

    def publish(self, use_case: str, staged: Sequence[DataFile]) -> DatasetVersion | None:
        """Add ``staged`` to the manifest: a new version (None when there is nothing to add)."""
        if not staged:
            return self._log(use_case).latest
        return self._log(use_case).append(staged, datetime.now(UTC))

    def discard(self, use_case: str, staged: Iterable[DataFile]) -> None:
        """Delete staged files whose transaction did not commit."""
        folder = self._log(use_case).folder
        for f in staged:
            (folder / f.path).unlink(missing_ok=True)

    def reconcile(self, use_case: str, topic: str, partition: int, committed: int) -> tuple[int, int]:
        """Settle the unpublished files of one source partition; (published, deleted)."""
        log_ = self._log(use_case)
        publish: list[DataFile] = []
        deleted = 0
        for path in sorted(log_.folder.glob("date=*/part-k-*.parquet")):
            rel = f"{path.parent.name}/{path.name}"
            found = _kafka_range(path.name)
            if rel in log_.files or found is None or found[:2] != (topic, partition):
                continue
            if found[3] < committed:
                publish.append(_describe(path, rel))
            else:
                path.unlink()
                deleted += 1
        if publish:
            log_.append(publish, datetime.now(UTC))
        if publish or deleted:
            log.warning(
                "dataset %s: %s/%d at offset %d: published %d committed file(s), deleted %d uncommitted",
                use_case,
                topic,
                partition,
                committed,
                len(publish),
                deleted,
            )
        return len(publish), deleted

    # -- reading -------------------------------------------------------------------------

    def current(self, use_case: str) -> DatasetVersion | None:
        return self._log(use_case).latest

    def get(self, use_case: str, version: str = "") -> DatasetVersion:
        """A version of the dataset (the latest when ``version`` is empty)."""
        log_ = self._log(use_case)
        if not version:
            if log_.latest is None:
                raise NotFound(f"use case {use_case!r} has no raw dataset yet")
            return log_.latest
        for entry in log_.entries():
            if entry["version"] == version:
                return _version_from(entry, log_.folder)
        raise NotFound(f"use case {use_case!r} has no dataset version {version!r}")

    def files(self, use_case: str, version: str = "") -> list[Path]:
        """The parquet files of a version, oldest first."""
        log_ = self._log(use_case)
        paths: list[str] = []
        found = not version
        for entry in log_.entries():
            paths += [f["path"] for f in entry["added"]]
            if version and entry["version"] == version:
                found = True
                break
        if not found:
            raise NotFound(f"use case {use_case!r} has no dataset version {version!r}")
        return [log_.folder / p for p in dict.fromkeys(paths)]

    def read(self, use_case: str, version: str = "") -> pa.Table:
        """The rows of a version, one per record id (the first stored)."""
        paths = self.files(use_case, version)
        if not paths:
            return self.schema(use_case).empty_table()
        table = pa.concat_tables([pq.read_table(p) for p in paths])
        # The first row of each record id (a replayed record was written twice).
        seen: set[str] = set()
        keep = []
        for i, rid in enumerate(table.column("_record_id").to_pylist()):
            if rid not in seen:
                seen.add(rid)
                keep.append(i)
        return table if len(keep) == table.num_rows else table.take(keep)


def _describe(path: Path, rel: str) -> DataFile:
    data = path.read_bytes()
    table = pq.read_table(path, columns=["_event_time"])
    times = [t for t in table.column("_event_time").to_pylist() if t is not None]
    return DataFile(
        rel,
        hashlib.sha256(data).hexdigest(),
        table.num_rows,
        min(times).isoformat() if times else "",
        max(times).isoformat() if times else "",
    )
