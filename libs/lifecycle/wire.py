"""A training set on the wire: Arrow IPC record batches, rebuilt into a frame on arrival.

The feature store's ``StreamTrainingSet`` sends a header (the set's Arrow schema, with
its pandas metadata, as an IPC schema message; its row count; its content hash) and then
the rows in messages of bounded size, each a small Arrow IPC stream: the batch's own
schema (without metadata) and one record batch (:func:`parquet_batches`, read a batch at
a time from the store's own parquet file). :class:`FrameAssembler` rebuilds the pandas
frame on the client: each batch's schema is compared with the header's, and its values
are copied into the frame's columns as it arrives, so the client holds the frame being
filled and one batch, never the whole stream twice. Both ends use this module, so they
agree on the format.

Whatever does not match the header (a batch of another schema, more or fewer rows than
it announced, a content hash that differs) raises :class:`TrainingSetMismatch`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from libs.errors import FailedPrecondition

# Size a batch message aims at, and the most it may be: gRPC clients refuse messages over
# 4 MiB unless told otherwise, and small messages keep both ends' memory flat.
BATCH_BYTES = 1 << 20
MAX_BATCH_BYTES = 3 << 20
# Rows hashed at a time by content_hash.
HASH_ROWS = 65_536
# What a row of a variable-width column (a string) is assumed to take, for sizing batches.
_VARIABLE_WIDTH_BYTES = 32


class TrainingSetMismatch(FailedPrecondition):
    """The rows received are not the training set the header announced."""


def content_hash(frame: pd.DataFrame) -> str:
    """The training set's content hash: its column names and dtypes, then each row's hash.

    The feature store names a set by it; a client recomputes it over the frame it rebuilt.
    Rows are hashed ``HASH_ROWS`` at a time (a row's hash depends on that row only, so the
    digest is the same as in one go, without a frame-sized temporary).
    """
    digest = hashlib.sha256(json.dumps([[c, str(t)] for c, t in frame.dtypes.items()]).encode())
    for start in range(0, len(frame), HASH_ROWS):
        rows = frame.iloc[start : start + HASH_ROWS]
        digest.update(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def schema_message(schema: pa.Schema) -> bytes:
    """``schema`` as an Arrow IPC schema message (what the header carries)."""
    return bytes(schema.serialize().to_pybytes())


def _row_bytes(schema: pa.Schema) -> int:
    total = 0
    for field in schema:
        try:
            total += max(1, field.type.bit_width // 8)
        except ValueError:  # not fixed-width
            total += _VARIABLE_WIDTH_BYTES
    return max(1, total)


def batch_message(batch: pa.RecordBatch) -> pa.Buffer:
    """``batch`` as an IPC stream of its own: its schema (no metadata), the batch, the end."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema.remove_metadata()) as writer:
        writer.write_batch(batch.replace_schema_metadata(None))
    return sink.getvalue()


def _bounded(batch: pa.RecordBatch, max_bytes: int) -> Iterator[bytes]:
    data = batch_message(batch)
    if data.size <= max_bytes:
        yield bytes(data.to_pybytes())
        return
    if batch.num_rows <= 1:
        raise FailedPrecondition(f"one row of the training set takes {data.size} bytes, over {max_bytes}")
    half = batch.num_rows // 2
    yield from _bounded(batch.slice(0, half), max_bytes)
    yield from _bounded(batch.slice(half), max_bytes)


def parquet_batches(
    path: Path, *, target_bytes: int = BATCH_BYTES, max_bytes: int = MAX_BATCH_BYTES
) -> Iterator[bytes]:
    """The rows of the parquet file at ``path`` as batch messages (:func:`batch_message`)
    of about ``target_bytes`` (never over ``max_bytes``), read one batch at a time."""
    with pq.ParquetFile(path) as parquet:
        rows = max(1, target_bytes // _row_bytes(parquet.schema_arrow))
        for batch in parquet.iter_batches(batch_size=rows, use_threads=False):
            yield from _bounded(batch, max_bytes)


def parquet_schema(path: Path) -> pa.Schema:
    """The Arrow schema (with its pandas metadata) the file's batches have."""
    return pq.read_schema(path)


def _describe(schema: pa.Schema) -> str:
    text = ", ".join(f"{f.name}: {f.type}" for f in schema)
    return f"({text[:300]}{'...' if len(text) > 300 else ''})"


def _is_text(dtype: object) -> bool:
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "python"


def _is_time(dtype: object) -> bool:
    return isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M")


class FrameAssembler:
    """Rebuilds a frame from a header (``schema``: an IPC schema message; ``row_count``)
    and the record batch messages that follow, added in order with :meth:`add`.

    Float and timestamp columns (most of a training set) are filled in place in arrays of
    ``row_count`` rows; other columns keep a copy of each batch's values and are converted
    at the end (text with one string object per distinct value). The result equals what
    pyarrow's ``to_pandas`` (and so ``pandas.read_parquet``) gives for the same rows.
    """

    def __init__(self, schema: bytes, row_count: int) -> None:
        try:
            self.schema = pa.ipc.read_schema(pa.py_buffer(schema))
            dtypes = self.schema.empty_table().to_pandas().dtypes
        except (pa.ArrowException, OSError, ValueError, TypeError, KeyError) as exc:
            raise TrainingSetMismatch(f"training set header: not an Arrow schema: {exc}") from None
        if row_count < 0:
            raise TrainingSetMismatch(f"training set header: row count {row_count}")
        self.row_count = row_count
        self.rows = 0
        self.batches = 0
        # The pandas metadata may rename or add columns (an index): then convert everything at the end.
        direct = list(dtypes.index) == self.schema.names
        self._direct = direct
        self._dtypes = dtypes
        self._filled: dict[str, np.ndarray] = {}
        self._chunks: dict[str, list[pa.Array]] = {}
        for name in self.schema.names:
            dtype = dtypes.get(name) if direct else None
            if dtype is not None and (_is_time(dtype) or (isinstance(dtype, np.dtype) and dtype.kind == "f")):
                base = (
                    np.dtype(f"datetime64[{dtype.unit}]") if isinstance(dtype, pd.DatetimeTZDtype) else dtype
                )
                self._filled[name] = np.empty(row_count, dtype=base)
            else:
                self._chunks[name] = []

    def add(self, message: bytes) -> None:
        """Check one batch message's schema against the header's and keep its rows."""
        try:
            reader = pa.ipc.open_stream(pa.py_buffer(message))
            batches = list(reader)
            for batch in batches:
                batch.validate()
        except (pa.ArrowException, OSError, ValueError, TypeError) as exc:  # IPC errors are OSError
            raise TrainingSetMismatch(f"training set batch {self.batches}: not Arrow IPC: {exc}") from None
        if not reader.schema.equals(self.schema, check_metadata=False):
            raise TrainingSetMismatch(
                f"training set batch {self.batches}: schema {_describe(reader.schema)} is not the "
                f"header's {_describe(self.schema)}"
            )
        for batch in batches:
            self._add(batch)
        self.batches += 1

    def _add(self, batch: pa.RecordBatch) -> None:
        end = self.rows + batch.num_rows
        if end > self.row_count:
            raise TrainingSetMismatch(
                f"training set: the header announced {self.row_count} rows, batch {self.batches} "
                f"brings the count to {end}"
            )
        for i, name in enumerate(self.schema.names):
            column = batch.column(i)
            if name in self._filled:
                self._filled[name][self.rows : end] = column.to_numpy(zero_copy_only=False)
            else:
                # A copy of its own, so the message's buffer is freed with the batch; from the
                # system allocator, so it goes back to the C heap once converted (Arrow's default
                # pool would keep it).
                self._chunks[name].append(pa.concat_arrays([column], memory_pool=pa.system_memory_pool()))
        self.rows = end

    def _text(self, name: str) -> pd.api.extensions.ExtensionArray:
        """A python-backed text column, one string object per distinct value: pyarrow makes
        one per row for that dtype (it shares them for object columns), so a category-like
        attribute of a million rows would take ~50 bytes a row instead of 8."""
        chunks = pa.chunked_array(self._chunks.pop(name), self.schema.field(name).type)
        values = chunks.to_pandas(deduplicate_objects=True).to_numpy(dtype=object)
        return pd.array(values, dtype=self._dtypes[name])

    def frame(self) -> pd.DataFrame:
        """The rebuilt frame; raises ``TrainingSetMismatch`` when rows are missing."""
        if self.rows != self.row_count:
            raise TrainingSetMismatch(
                f"training set: the header announced {self.row_count} rows, "
                f"{self.rows} arrived in {self.batches} batches"
            )
        texts = {n: self._text(n) for n in list(self._chunks) if self._direct and _is_text(self._dtypes[n])}
        fields = [self.schema.field(n) for n in self._chunks]
        rest = pa.Table.from_arrays(
            [pa.chunked_array(self._chunks.pop(f.name), f.type) for f in fields],
            schema=pa.schema(fields, metadata=self.schema.metadata),
        )
        if not self._direct:
            return rest.to_pandas()  # the metadata decides the columns (an index, renames)
        converted = rest.to_pandas() if fields else pd.DataFrame(index=pd.RangeIndex(self.row_count))
        del rest
        columns: dict[str, object] = {}
        for name in self.schema.names:
            if name in texts:
                columns[name] = texts[name]
                continue
            if name not in self._filled:
                columns[name] = converted[name]
                continue
            values = self._filled.pop(name)
            dtype = self._dtypes[name]
            if isinstance(dtype, pd.DatetimeTZDtype):
                # Arrow keeps instants in UTC: localise to UTC, then show them in the column's zone.
                columns[name] = pd.DatetimeIndex(values, copy=False).tz_localize("UTC").tz_convert(dtype.tz)
            else:
                columns[name] = values
        return pd.DataFrame(columns, index=pd.RangeIndex(self.row_count), copy=False)
