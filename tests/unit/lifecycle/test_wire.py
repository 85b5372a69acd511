"""A training set's wire form (libs.lifecycle.wire): bounded batches out of a parquet file,
the same frame back out of them, and every way the rows can disagree with the header."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from libs.errors import FailedPrecondition
from libs.lifecycle import wire
from libs.lifecycle.wire import (
    FrameAssembler,
    TrainingSetMismatch,
    content_hash,
    parquet_batches,
    parquet_schema,
    schema_message,
)
from tests.training_sets import loan_frame


def _written(frame: pd.DataFrame, path: Path, row_group_size: int = 1_000) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size)
    return path


def _training_frame(n: int) -> pd.DataFrame:
    """A loan training set as the feature store writes it, with the awkward values too:
    missing features, a missing label time, a missing attribute, µs UTC timestamps."""
    frame = loan_frame(n)
    frame["event_time"] = frame["event_time"].astype("datetime64[us, UTC]")
    frame["label_time"] = frame["label_time"].astype("datetime64[us, UTC]")
    frame["gender"] = frame["gender"].astype("string")
    frame.loc[3, "salary"] = np.nan
    frame.loc[5, "label_time"] = pd.NaT
    frame.loc[7, "gender"] = pd.NA
    return frame


def _assemble(path: Path, messages: list[bytes]) -> pd.DataFrame:
    assembler = FrameAssembler(schema_message(parquet_schema(path)), pq.ParquetFile(path).metadata.num_rows)
    for message in messages:
        assembler.add(message)
    return assembler.frame()


def test_many_bounded_batches_rebuild_the_file_exactly(tmp_path: Path) -> None:
    frame = _training_frame(3_000)
    path = _written(frame, tmp_path / "set.parquet")
    messages = list(parquet_batches(path, target_bytes=32_000, max_bytes=64_000))
    assert len(messages) > 10 and max(map(len, messages)) <= 64_000
    got = _assemble(path, messages)
    pd.testing.assert_frame_equal(got, pq.read_table(path).to_pandas())
    pd.testing.assert_frame_equal(got, frame)
    assert content_hash(got) == content_hash(frame)
    # Text shares one string object per value (pyarrow would make one per row).
    genders = [g for g in got["gender"].to_numpy(dtype=object) if isinstance(g, str)]
    assert len({id(g) for g in genders}) == len(set(genders))


def test_a_batch_over_the_bound_is_split(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(10_000, dtype=np.float64), "s": ["y" * 100] * 10_000})
    path = _written(frame, tmp_path / "wide.parquet", row_group_size=10_000)
    # Sized by the estimate (32 bytes a string), each batch is far over the bound: halved until under.
    messages = list(parquet_batches(path, target_bytes=400_000, max_bytes=100_000))
    assert max(map(len, messages)) <= 100_000
    pd.testing.assert_frame_equal(_assemble(path, messages), frame)


def test_a_row_over_the_bound_is_refused(tmp_path: Path) -> None:
    path = _written(pd.DataFrame({"s": ["y" * 5_000]}), tmp_path / "row.parquet")
    with pytest.raises(FailedPrecondition, match="one row"):
        list(parquet_batches(path, target_bytes=100, max_bytes=1_000))


def test_an_empty_set_and_every_column_kind(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "i": np.array([1, 2], dtype=np.int64),
            "f32": np.array([1.5, np.nan], dtype=np.float32),
            "b": [True, False],
            "naive": pd.to_datetime(["2026-01-01", None]).astype("datetime64[us]"),
            "paris": pd.to_datetime(["2026-01-01T10:00", "2026-07-01T10:00"]).tz_localize("Europe/Paris"),
            "o": ["a", None],
        }
    )
    path = _written(frame, tmp_path / "kinds.parquet")
    pd.testing.assert_frame_equal(_assemble(path, list(parquet_batches(path))), frame)
    empty = _written(frame.iloc[:0], tmp_path / "empty.parquet")
    assert _assemble(empty, list(parquet_batches(empty))).empty


def test_fewer_or_more_rows_than_announced_are_a_mismatch(tmp_path: Path) -> None:
    path = _written(_training_frame(500), tmp_path / "set.parquet")
    messages = list(parquet_batches(path, target_bytes=20_000))
    schema = schema_message(parquet_schema(path))
    short = FrameAssembler(schema, 500)
    for m in messages[:-1]:
        short.add(m)
    with pytest.raises(TrainingSetMismatch, match="announced 500 rows"):
        short.frame()
    long = FrameAssembler(schema, 499)
    with pytest.raises(TrainingSetMismatch, match="announced 499 rows"):
        for m in messages:
            long.add(m)


def test_a_batch_of_another_schema_is_a_mismatch(tmp_path: Path) -> None:
    frame = _training_frame(100)
    path = _written(frame, tmp_path / "set.parquet")
    header = schema_message(parquet_schema(path))
    # A column fewer, a column more, a column of another type with the same layout.
    others = [
        frame.drop(columns="gender"),
        frame.assign(extra=1.0),
        frame.assign(salary=frame["salary"].fillna(0).astype("int64")),
    ]
    for i, other in enumerate(others):
        other_path = _written(other, tmp_path / f"other{i}.parquet")
        assembler = FrameAssembler(header, 100)
        with pytest.raises(TrainingSetMismatch, match="is not the header's"):
            for m in parquet_batches(other_path):
                assembler.add(m)
    with pytest.raises(TrainingSetMismatch, match="not Arrow IPC"):
        FrameAssembler(header, 100).add(b"garbage")
    with pytest.raises(TrainingSetMismatch, match="not an Arrow schema"):
        FrameAssembler(b"not a schema", 100)
    with pytest.raises(TrainingSetMismatch, match="row count"):
        FrameAssembler(schema_message(parquet_schema(path)), -1)


def test_the_content_hash_is_the_same_in_chunks_as_in_one_go(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _training_frame(1_000)
    whole = hashlib.sha256(json.dumps([[c, str(t)] for c, t in frame.dtypes.items()]).encode())
    whole.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    assert content_hash(frame) == whole.hexdigest()
    monkeypatch.setattr(wire, "HASH_ROWS", 97)
    assert content_hash(frame) == whole.hexdigest()
    assert content_hash(frame.iloc[:0]) != content_hash(frame.iloc[:0].rename(columns={"salary": "s"}))
