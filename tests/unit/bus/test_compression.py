"""The decompression caps of libs.bus.compression: the capped codecs on their own, then the
fetcher's record batches (aiokafka's C extension, as the services run it) with a bomb between
valid batches, and the event consumer dead-lettering what was skipped. The broker path is in
tests/security/test_attack_compression.py."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
from collections.abc import Iterator

import aiokafka.record.memory_records
import pytest
from aiokafka import TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder, _DefaultRecordBatchPy
from aiokafka.record.memory_records import MemoryRecords, _MemoryRecordsPy
from aiokafka.record.util import calc_crc32c
from google.protobuf.message import Message

from libs.bus import compression
from libs.bus import headers as h
from libs.bus.compression import (
    DecompressionLimit,
    SkippedRecord,
    gunzip,
    lz4_bound,
    snappy_bound,
    zstd_bound,
)
from libs.bus.consumer import Event
from tests.unit.bus.test_consumer import TP, consumer_with, record

MiB = 1 << 20


@pytest.fixture
def caps() -> Iterator[compression.Caps]:
    before = compression.caps()
    yield compression.install(max_batch_bytes=4 * MiB, max_record_bytes=1 * MiB)
    compression.install(before.batch_bytes, before.record_bytes)


# -- codecs -------------------------------------------------------------------------------------------


def test_gunzip_inflates_what_fits_one_member_or_several() -> None:
    data = b"abc" * 1000
    assert gunzip(gzip.compress(data), len(data)) == data
    assert gunzip(gzip.compress(data) + gzip.compress(b"xyz") + b"\x00" * 4, 4 * len(data)) == data + b"xyz"


def test_gunzip_stops_at_the_cap_without_inflating_the_rest() -> None:
    bomb = gzip.compress(bytes(256 * MiB), compresslevel=1)
    tracemalloc.start()
    try:
        with pytest.raises(DecompressionLimit, match=f"cap of {MiB} bytes"):
            gunzip(bomb, MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB + 2 * len(bomb), peak
    with pytest.raises(DecompressionLimit):
        gunzip(gzip.compress(b"x" * 101), 100)  # one byte past is past


def test_gunzip_refuses_a_cut_stream() -> None:
    with pytest.raises(EOFError):
        gunzip(gzip.compress(b"abc" * 1000)[:-12], MiB)


def test_snappy_bound_reads_the_declared_lengths() -> None:
    assert snappy_bound(b"\x80\x80\x80\x80\x01" + b"junk") == 1 << 28  # raw: varint length first
    block = b"\x80\x80\x40" + b"...."  # declares 1 MiB
    xerial = b"\x82SNAPPY\x00" + struct.pack("!ii", 1, 1)
    two = xerial + (struct.pack("!i", len(block)) + block) * 2
    assert snappy_bound(two) == 2 * MiB
    with pytest.raises(DecompressionLimit):
        snappy_bound(xerial + struct.pack("!i", 1000) + block)  # block longer than the stream


def _lz4_frame(blocks: list[tuple[int, bool]], block_id: int = 4) -> bytes:
    frame = struct.pack("<I", 0x184D2204) + bytes([0x60, block_id << 4, 0])  # independent blocks
    for size, stored in blocks:
        frame += struct.pack("<I", size | (0x80000000 if stored else 0)) + b"\x00" * size
    return frame + struct.pack("<I", 0)


def test_lz4_bound_counts_each_compressed_block_at_the_frame_block_size() -> None:
    assert lz4_bound(_lz4_frame([(10, False), (10, False), (7, True)])) == 2 * 64 * 1024 + 7
    assert lz4_bound(_lz4_frame([(10, False)], block_id=7) * 3) == 3 * 4 * MiB
    with pytest.raises(DecompressionLimit):
        lz4_bound(_lz4_frame([(10, False)])[:-6])
    with pytest.raises(DecompressionLimit):
        lz4_bound(b"\x00\x01\x02\x03rest")


def test_zstd_bound_adds_raw_and_rle_sizes_and_128_kib_per_compressed_block() -> None:
    header = struct.pack("<I", 0xFD2FB528) + bytes([0x00, 7 << 3])
    raw = struct.pack("<I", 5 << 3)[:3] + b"hello"
    rle = struct.pack("<I", (100_000 << 3) | (1 << 1))[:3] + b"\x00"
    compressed_last = struct.pack("<I", (3 << 3) | (2 << 1) | 1)[:3] + b"abc"
    assert zstd_bound(header + raw + rle * 3 + compressed_last) == 5 + 300_000 + 128 * 1024
    with pytest.raises(DecompressionLimit):
        zstd_bound(header + raw)  # no last block
    with pytest.raises(DecompressionLimit):
        zstd_bound(b"\x28\xb5\x2f\xfe" + header[4:])


def test_a_codec_bounded_past_the_cap_is_never_decompressed(caps: compression.Caps) -> None:
    import aiokafka.codec

    frame = _lz4_frame([(10, False)] * 100)  # up to 6.25 MiB, past the 4 MiB cap
    with pytest.raises(DecompressionLimit, match=f"cap of {4 * MiB} bytes"):
        aiokafka.codec.lz4_decode(frame)


# -- the fetcher --------------------------------------------------------------------------------------


def _batch(base: int, values: list[bytes], codec: int = 1) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for i, value in enumerate(values):
        builder.append(i, timestamp=None, key=None, value=value, headers=[])
    data = bytearray(builder.build())
    data[0:8] = base.to_bytes(8, "big")
    return bytes(data)


def _fetched(data: bytes, records: type = MemoryRecords) -> fetcher.PartitionRecords:
    # Looked up now, as aiokafka's Fetcher does: install() replaced it.
    return fetcher.PartitionRecords(TopicPartition("raw", 0), records(data), [], 0, None, None, True, 0)


# aiokafka's C extension (what runs), and its pure Python records (AIOKAFKA_NO_EXTENSIONS).
@pytest.mark.parametrize("extension", [True, False], ids=["c-extension", "python"])
def test_a_bomb_batch_is_skipped_and_the_batches_around_it_are_read(
    caps: compression.Caps, extension: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory_records: type = MemoryRecords
    if not extension:
        monkeypatch.setattr(aiokafka.record.memory_records, "DefaultRecordBatch", _DefaultRecordBatchPy)
        memory_records = _MemoryRecordsPy
    bomb = _batch(1, [bytes(MiB)] * 20)  # 20 MiB inflated, past the 4 MiB cap
    fetched = _fetched(
        _batch(0, [b"a"]) + bomb + _batch(21, [b"b", bytes(2 * MiB), b"c"]) + _batch(24, [b"d"], 0),
        memory_records,
    )
    records = list(fetched)
    assert [(type(r).__name__, r.offset, r.value) for r in records] == [
        ("ConsumerRecord", 0, b"a"),
        ("SkippedRecord", 20, None),
        ("ConsumerRecord", 21, b"b"),
        ("SkippedRecord", 22, None),
        ("ConsumerRecord", 23, b"c"),
        ("ConsumerRecord", 24, b"d"),
    ]
    assert fetched.next_fetch_offset == 25  # the consumer's position moves past both
    batch, one = records[1], records[3]
    assert isinstance(batch, SkippedRecord) and isinstance(one, SkippedRecord)
    assert (batch.first_offset, batch.error) == (1, compression.TOO_LARGE)
    assert batch.reason.startswith("record batch raw/0 offsets 1-20 skipped, not buffered: gzip batch")
    assert f"cap of {4 * MiB} bytes per batch" in batch.reason
    assert one.reason == (
        f"record raw/0@22 skipped: {2 * MiB} bytes after decompression, past the cap of {MiB} bytes per record"
    )
    # What a consumer that copies a record's fields (faust) still finds: the header.
    assert compression.skipped_reason(batch.value, batch.headers) == (compression.TOO_LARGE, batch.reason)
    assert compression.skipped_reason(b"", one.headers) == (compression.TOO_LARGE, one.reason)
    assert compression.skipped_reason(records[0].value, records[0].headers) is None
    # A payload wins over a forged header: only an empty record can claim to be skipped.
    assert compression.skipped_reason(b"x", batch.headers) is None


def test_a_batch_in_a_codec_this_process_lacks_is_skipped(caps: compression.Caps) -> None:
    import aiokafka.codec

    if aiokafka.codec.cramjam is not None:
        pytest.skip("cramjam is installed: zstd is readable here")
    # A real zstd frame, one raw block: one record (value b"z") in the v2 layout.
    body = b"\x00\x00\x00\x01\x02z\x00"  # attributes, deltas, no key, value, no headers
    records = bytes([len(body) * 2]) + body
    frame = struct.pack("<I", 0xFD2FB528) + bytes([0x00, 7 << 3])
    frame += struct.pack("<I", (len(records) << 3) | 1)[:3] + records
    after_crc = struct.pack(">hiqqqhii", 4, 0, 0, 0, -1, -1, -1, 1) + frame
    data = struct.pack(">qiibI", 5, len(after_crc) + 9, -1, 2, calc_crc32c(after_crc)) + after_crc
    [skipped] = list(_fetched(data))
    assert isinstance(skipped, SkippedRecord) and skipped.error == compression.UNREADABLE
    assert "zstd" in skipped.reason and "raw/0 offsets 5-5" in skipped.reason


async def test_the_event_consumer_dead_letters_a_skipped_batch_without_payload(
    caps: compression.Caps,
) -> None:
    handled: list[int] = []

    async def handle(event: Event[Message]) -> None:
        handled.append(event.offset)

    consumer, fake, sent = await consumer_with(handle)
    skipped = SkippedRecord(
        TP.topic, 0, 20, 0, 0, None, None, None, -1, -1, (), reason="past the cap", first_offset=8
    )
    await consumer._handle_partition(TP, [record(7), skipped, record(21)])
    assert handled == [7, 21]
    [(value, letter)] = sent.letters
    assert value == b""
    assert letter[h.DLQ_REASON] == b"past the cap" and letter[h.DLQ_ERROR] == compression.TOO_LARGE.encode()
    assert letter[h.DLQ_SOURCE] == f"{TP.topic}/0/20".encode()
    assert fake.commits[-1] == {TP: 22}
