"""The offline parquet datasets: idempotent appends across reopen, atomic files, compaction."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from services.featurestore.store.offline import STAGING, ParquetDataset

SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("x", pa.float64())])


def table(ids: list[str]) -> pa.Table:
    return pa.table({"id": ids, "x": [float(len(i)) for i in ids]}, schema=SCHEMA)


def test_known_keys_are_skipped_also_after_reopening(tmp_path: Path) -> None:
    data = ParquetDataset(tmp_path, SCHEMA, "id")
    assert data.append(table(["a", "b", "b"])) == 2
    assert data.append(table(["b", "c"])) == 1
    assert data.append(table(["a"])) == 0
    again = ParquetDataset(tmp_path, SCHEMA, "id")
    assert len(again) == 3 and "c" in again
    assert again.append(table(["c", "d"])) == 1
    assert sorted(again.read().column("id").to_pylist()) == ["a", "b", "c", "d"]


def test_readers_never_see_staged_files_and_leftovers_are_removed(tmp_path: Path) -> None:
    data = ParquetDataset(tmp_path, SCHEMA, "id")
    data.append(table(["a"]))
    (tmp_path / STAGING / "dead.parquet").write_bytes(b"half a file")
    # What Feast's dask reader and pyarrow discover: names starting with "_" are skipped.
    assert ds.dataset(str(tmp_path), format="parquet").to_table().num_rows == 1
    ParquetDataset(tmp_path, SCHEMA, "id")
    assert list((tmp_path / STAGING).iterdir()) == []


def test_small_files_are_compacted(tmp_path: Path) -> None:
    data = ParquetDataset(tmp_path, SCHEMA, "id", compact_at=4)
    for i in range(10):
        data.append(table([f"k{i}"]))
    files = list(tmp_path.glob("*.parquet"))
    assert len(files) < 4
    assert sorted(data.read().column("id").to_pylist()) == sorted(f"k{i}" for i in range(10))
    assert len(ParquetDataset(tmp_path, SCHEMA, "id")) == 10
