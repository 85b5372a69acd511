"""Caps on what a compressed Kafka record batch may inflate to, for every consumer of the process.

A producer can send a batch of a few hundred KiB (under the broker's ``message.max.bytes``)
that inflates to gigabytes: aiokafka decompresses a whole batch at once when the consumer
first reads it (``DefaultRecordBatch._maybe_uncompress``, C extension and pure Python alike,
both calling the decode functions of :mod:`aiokafka.codec` through their module globals),
and keeps the result while the batch is read. :func:`install` replaces those functions,
once per process, with ones that stop at a cap:

- gzip inflates through ``zlib.decompressobj(...).decompress(data, max_length)``: never
  more than the cap plus one byte is produced;
- snappy, lz4 and zstd (cramjam, when installed) are bounded *before* decompressing, from
  their framing: snappy declares each block's length, an lz4 frame's blocks inflate to at
  most the frame's block size, a zstd block to at most 128 KiB (RLE and raw blocks declare
  theirs). A stream whose bound is over the cap, or whose framing cannot be read, is never
  decompressed.

A batch over the cap (or in a codec this process cannot read) is skipped, not buffered:
the fetcher hands the consumer one :class:`SkippedRecord` in its place (at the batch's last
offset, no payload), so the consumer dead-letters it with :attr:`SkippedRecord.reason` and
commits past it like any record, and the valid records around it are delivered as usual.
A record inflating past the per-record cap is skipped the same way. Faust's consumer is an
aiokafka consumer, so it goes through the same fetcher and codecs.
"""

from __future__ import annotations

import logging
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import UnsupportedCodecError

from libs.errors import AifError

log = logging.getLogger(__name__)

MiB = 1 << 20
# What one batch may inflate to: far above any batch a producer of the factory sends
# (aiokafka's and Java's producers fill batches of 16 KiB to 1 MiB of records), far below
# what would hurt a service (a few of them may be held at once, one per partition).
DEFAULT_MAX_BATCH_BYTES = 64 * MiB
# What one record (key, value and headers) may inflate to: the largest request a producer
# of the factory is allowed (4 MiB) with room to spare.
DEFAULT_MAX_RECORD_BYTES = 16 * MiB

# The dead-letter error code of a skipped batch or record.
TOO_LARGE = "decompressed-too-large"
UNREADABLE = "undecompressable"
# A skipped record's header: "<error>\n<reason>", for consumers that see a record's fields
# only (faust turns the SkippedRecord into a message of its own; a repartition forwards it).
SKIPPED_HEADER = "aif-skipped"


class DecompressionLimit(AifError):
    """A compressed stream would inflate past the cap (or cannot be bounded)."""


@dataclass(frozen=True)
class Caps:
    batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    record_bytes: int = DEFAULT_MAX_RECORD_BYTES


_caps = Caps()
_installed = False
_lock = threading.Lock()


def caps() -> Caps:
    return _caps


# -- capped codecs ----------------------------------------------------------------------------------


def gunzip(data: Any, limit: int) -> bytes:
    """``data`` (gzip, one member or several) inflated; :class:`DecompressionLimit` past ``limit`` bytes."""
    out = bytearray()
    pending = bytes(data)
    while pending:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        while True:
            # max_length 0 would mean "no limit": room is at least 1.
            out += inflater.decompress(pending, limit + 1 - len(out))
            if len(out) > limit:
                raise DecompressionLimit(f"gzip batch inflates past the cap of {limit} bytes per batch")
            pending = inflater.unconsumed_tail
            if not pending:
                break
        if not inflater.eof:
            # As gzip.GzipFile would: the stream was cut.
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        # Another member may follow (zero padding after the last one is allowed, as gzip does).
        pending = inflater.unused_data.lstrip(b"\x00")
    return bytes(out)


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 35:
            raise DecompressionLimit("snappy length is malformed")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


_XERIAL = b"\x82SNAPPY\x00"


def snappy_bound(data: Any) -> int:
    """What a snappy stream (raw, or xerial's blocks as Kafka's Java clients write) declares it inflates to."""
    view = memoryview(bytes(data))
    if len(view) <= 16 or bytes(view[:8]) != _XERIAL:
        return _varint(view, 0)[0]
    total, pos = 0, 16
    while pos < len(view):
        if pos + 4 > len(view):
            raise DecompressionLimit("snappy block header is cut")
        (size,) = struct.unpack_from("!i", view, pos)
        pos += 4
        if size < 0 or pos + size > len(view):
            raise DecompressionLimit("snappy block length is malformed")
        total += _varint(view[pos : pos + size], 0)[0]
        pos += size
    return total


_LZ4_MAGIC = 0x184D2204
_LZ4_BLOCK = {4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20}


def _skippable(magic: int) -> bool:
    return magic & 0xFFFFFFF0 == 0x184D2A50  # the same for lz4 and zstd


def lz4_bound(data: Any) -> int:
    """Most an lz4 stream (frames, as Kafka writes: KIP-57) can inflate to: each compressed
    block at most its frame's block size, each stored block its own length."""
    view = bytes(data)
    total = pos = 0
    while pos < len(view):
        try:
            (magic,) = struct.unpack_from("<I", view, pos)
            pos += 4
            if _skippable(magic):
                (size,) = struct.unpack_from("<I", view, pos)
                pos += 4 + size
                continue
            if magic != _LZ4_MAGIC:
                raise DecompressionLimit("lz4 frame magic is wrong")
            flags, bd = view[pos], view[pos + 1]
            block_max = _LZ4_BLOCK.get((bd >> 4) & 0x7)
            if block_max is None:
                raise DecompressionLimit("lz4 block size is malformed")
            pos += 2 + (8 if flags & 0x08 else 0) + (4 if flags & 0x01 else 0) + 1
            block_checksum = 4 if flags & 0x10 else 0
            while True:
                (size,) = struct.unpack_from("<I", view, pos)
                pos += 4
                if size == 0:
                    break
                stored = bool(size & 0x80000000)
                size &= 0x7FFFFFFF
                total += size if stored else block_max
                pos += size + block_checksum
            pos += 4 if flags & 0x04 else 0
        except (struct.error, IndexError):
            raise DecompressionLimit("lz4 frame is cut") from None
    return total


_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_BLOCK_MAX = 128 << 10


def zstd_bound(data: Any) -> int:
    """Most a zstd stream can inflate to: raw and RLE blocks declare their size, a compressed
    block inflates to at most 128 KiB (the format's Block_Maximum_Size)."""
    view = bytes(data)
    total = pos = 0
    while pos < len(view):
        try:
            (magic,) = struct.unpack_from("<I", view, pos)
            pos += 4
            if _skippable(magic):
                (size,) = struct.unpack_from("<I", view, pos)
                pos += 4 + size
                continue
            if magic != _ZSTD_MAGIC:
                raise DecompressionLimit("zstd frame magic is wrong")
            descriptor = view[pos]
            pos += 1
            single_segment = bool(descriptor & 0x20)
            pos += 0 if single_segment else 1  # window descriptor
            pos += (0, 1, 2, 4)[descriptor & 0x03]  # dictionary id
            pos += (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]  # content size
            while True:
                if pos + 3 > len(view):
                    raise DecompressionLimit("zstd block header is cut")
                header = int.from_bytes(view[pos : pos + 3], "little")
                pos += 3
                last, kind, size = header & 1, (header >> 1) & 3, header >> 3
                if kind == 0:  # raw
                    total, pos = total + size, pos + size
                elif kind == 1:  # RLE: one byte, repeated size times
                    total, pos = total + size, pos + 1
                elif kind == 2:
                    total, pos = total + _ZSTD_BLOCK_MAX, pos + size
                else:
                    raise DecompressionLimit("zstd block type is reserved")
                if last:
                    break
            pos += 4 if descriptor & 0x04 else 0
        except (struct.error, IndexError):
            raise DecompressionLimit("zstd frame is cut") from None
    return total


def _bounded(
    name: str, decode: Callable[[Any], bytes], bound: Callable[[Any], int], available: Callable[[], bool]
) -> Callable[[Any], bytes]:
    def capped(data: Any) -> bytes:
        limit = _caps.batch_bytes
        declared = bound(data)
        if declared > limit:
            raise DecompressionLimit(
                f"{name} batch inflates to up to {declared} bytes, past the cap of {limit} bytes per batch"
            )
        if not available():
            # Checked here rather than before the bound (see install): a bomb is named a bomb.
            raise UnsupportedCodecError(f"Libraries for {name} compression codec not found")
        out = decode(data)
        if len(out) > limit:  # the bound is the format's; never trust it alone
            raise DecompressionLimit(f"{name} batch inflates past the cap of {limit} bytes per batch")
        return out

    capped.__name__ = f"{name}_decode"
    return capped


# -- skipping in the fetcher ------------------------------------------------------------------------


@dataclass
class SkippedRecord(ConsumerRecord[Any, Any]):
    """Stands in for a batch (or a record) the consumer did not buffer: no key, no value, the
    offset of its last record (committing past it moves past all of it), and why."""

    reason: str = ""
    error: str = TOO_LARGE
    first_offset: int = -1


def skipped_reason(
    value: bytes | None, headers: Iterable[tuple[str, bytes]] | None
) -> tuple[str, str] | None:
    """``(error, reason)`` of a record the fetcher skipped, found from its fields alone (no
    payload, the :data:`SKIPPED_HEADER`); None for any record with a payload. A producer
    may forge the header on an empty record of its own: that only dead-letters it."""
    if value:
        return None
    for key, raw in headers or ():
        if key == SKIPPED_HEADER:
            error, _, reason = (raw or b"").decode("utf-8", "replace").partition("\n")
            return error, reason
    return None


class _Marker:
    """What :class:`_CappedBatch` yields in place of what it skipped: looks like a record to
    aiokafka's PartitionRecords, which hands it to :meth:`_CappedPartitionRecords._consumer_record`."""

    key = value = None
    checksum = None
    headers: tuple[tuple[str, bytes], ...] = ()

    def __init__(self, first: int, last: int, timestamp: int, timestamp_type: int, reason: str, error: str):
        self.first_offset, self.offset = first, last
        self.timestamp, self.timestamp_type = timestamp, timestamp_type
        self.reason, self.error = reason, error


def _record_size(record: Any) -> int:
    return (
        len(record.key or b"")
        + len(record.value or b"")
        + sum(len(k) + len(v or b"") for k, v in record.headers or ())
    )


class _CappedBatch:
    """One record batch of a fetch: iterated record by record as aiokafka's, except that a
    batch that cannot be decompressed within the caps yields one marker instead."""

    def __init__(self, batch: Any, where: str) -> None:
        self._batch = batch
        self._where = where

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __next__(self) -> Any:  # control batches are read with next()
        return next(self._batch)

    def __iter__(self) -> Iterator[Any]:
        batch = self._batch
        first = batch.base_offset
        last = batch.next_offset - 1 if hasattr(batch, "next_offset") else first
        stamp = getattr(batch, "max_timestamp", None) or getattr(batch, "first_timestamp", None) or -1
        stamp_type = getattr(batch, "timestamp_type", 0)
        try:
            # aiokafka inflates a compressed batch, whole, when it is first iterated.
            records = iter(batch)
            head = next(records, None)
        except (DecompressionLimit, UnsupportedCodecError, EOFError, zlib.error) as exc:
            error = TOO_LARGE if isinstance(exc, DecompressionLimit) else UNREADABLE
            reason = f"record batch {self._where} offsets {first}-{last} skipped, not buffered: {exc}"
            log.warning("%s", reason)
            yield _Marker(first, last, stamp, stamp_type, reason, error)
            return
        limit = _caps.record_bytes
        record = head
        while record is not None:
            size = _record_size(record)
            if size > limit:
                reason = (
                    f"record {self._where}@{record.offset} skipped: {size} bytes after decompression,"
                    f" past the cap of {limit} bytes per record"
                )
                log.warning("%s", reason)
                yield _Marker(
                    record.offset, record.offset, record.timestamp, record.timestamp_type, reason, TOO_LARGE
                )
            else:
                yield record
            # next(), never iter() again: aiokafka's batch is its own iterator and cannot restart.
            record = next(records, None)


class _CappedRecords:
    """The fetched MemoryRecords of one partition, handing out :class:`_CappedBatch`es."""

    def __init__(self, records: Any, where: str) -> None:
        self._records = records
        self._where = where

    def __getattr__(self, name: str) -> Any:
        return getattr(self._records, name)

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        return None if batch is None else _CappedBatch(batch, self._where)


def _partition_records_class(base: type) -> type:
    class _CappedPartitionRecords(base):  # type: ignore[misc,valid-type]
        def __init__(self, tp: Any, records: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(tp, _CappedRecords(records, f"{tp.topic}/{tp.partition}"), *args, **kwargs)

        def _consumer_record(self, tp: Any, record: Any) -> Any:
            if isinstance(record, _Marker):
                # Never handed to the deserializers: there is nothing to deserialize.
                return SkippedRecord(
                    tp.topic,
                    tp.partition,
                    record.offset,
                    record.timestamp,
                    record.timestamp_type,
                    None,
                    None,
                    None,
                    -1,
                    -1,
                    ((SKIPPED_HEADER, f"{record.error}\n{record.reason}".encode()),),
                    reason=record.reason,
                    error=record.error,
                    first_offset=record.first_offset,
                )
            return super()._consumer_record(tp, record)

    return _CappedPartitionRecords


# -- installing -------------------------------------------------------------------------------------


def _codec_modules() -> list[ModuleType]:
    """Every module that calls aiokafka's decode functions through its globals."""
    import aiokafka.codec
    import aiokafka.record.default_records
    import aiokafka.record.legacy_records

    modules: list[ModuleType] = [
        aiokafka.codec,
        aiokafka.record.default_records,
        aiokafka.record.legacy_records,
    ]
    try:  # the C extension, when built (aiokafka.util.NO_EXTENSIONS unset)
        from aiokafka.record._crecords import default_records as c_default
        from aiokafka.record._crecords import legacy_records as c_legacy

        modules += [c_default, c_legacy]
    except ImportError:
        pass
    return modules


def _always() -> bool:
    return True


def install(max_batch_bytes: int | None = None, max_record_bytes: int | None = None) -> Caps:
    """Puts the caps on every aiokafka consumer of this process (patched once; later calls
    only change the caps). Called wherever libs.bus or a service builds a consumer."""
    global _caps, _installed
    with _lock:
        _caps = Caps(
            max_batch_bytes if max_batch_bytes is not None else _caps.batch_bytes,
            max_record_bytes if max_record_bytes is not None else _caps.record_bytes,
        )
        if _installed:
            return _caps
        import aiokafka.codec as codec
        import aiokafka.consumer.fetcher as fetcher

        replacements: dict[str, Callable[..., Any]] = {
            "gzip_decode": lambda data: gunzip(data, _caps.batch_bytes),
            "snappy_decode": _bounded("snappy", codec.snappy_decode, snappy_bound, codec.has_snappy),
            "lz4_decode": _bounded("lz4", codec.lz4_decode, lz4_bound, codec.has_lz4),
            "zstd_decode": _bounded("zstd", codec.zstd_decode, zstd_bound, codec.has_zstd),
        }
        # The record batches ask has_<codec>() before decoding; the capped decoders ask it
        # after bounding, so a bomb in a codec this process lacks is still reported as one.
        # (A producer configured with such a codec fails at its first batch instead.)
        for name in ("has_snappy", "has_lz4", "has_zstd"):
            replacements[name] = _always
        for module in _codec_modules():
            for name, function in replacements.items():
                if hasattr(module, name):
                    setattr(module, name, function)
        fetcher.PartitionRecords = _partition_records_class(fetcher.PartitionRecords)  # type: ignore[attr-defined]
        _installed = True
        return _caps


def ensure_installed() -> Caps:
    """:func:`install` with the caps as they are (the defaults unless a service set its own)."""
    return install()
