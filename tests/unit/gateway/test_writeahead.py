"""The prediction log's write-ahead file: what a killed gateway had answered but not
published is published by the next process, byte for byte, and nothing else."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path

import pytest

from libs.errors import ConfigError
from services.gateway.predlog import PredictionLog, Served
from services.gateway.writeahead import WriteAheadLog
from tests.unit.gateway.test_predlog import LOAN, FakeBulk, drained, entry, log_for


def _values(bulk: FakeBulk) -> list[tuple[bytes, bytes]]:
    return [(r.key, r.value) for _, r in bulk.records]


async def _killed(log: PredictionLog) -> None:
    """The process dies: the flusher stops mid-retry, no close, no last flush."""
    assert log._task is not None
    log._task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await log._task
    wal = log._wal
    assert wal is not None
    os.close(wal._fd)  # the kernel closes a dead process's files (and drops its lock)
    os.close(wal._mark_fd)
    os.close(wal._lock)


async def test_a_killed_gateway_publishes_its_answered_predictions_at_the_next_start(tmp_path: Path) -> None:
    folder = tmp_path / "wal"
    reference = FakeBulk()
    plain = log_for(LOAN, reference)
    plain.start()
    served = [entry(LOAN, rows=2), entry(LOAN, rows=1, oip_response=None), entry(LOAN, rows=3, shadow=True)]
    for s in served:
        assert plain.offer(s)
    await plain.close()

    down = FakeBulk()
    down.failures = 10**6  # Kafka unreachable: everything stays buffered
    first = log_for(LOAN, down, wal=WriteAheadLog(folder))
    first.start()
    for s in served:
        assert first.offer(s)
    await asyncio.sleep(0.05)
    await _killed(first)
    assert down.records == [] and first.buffered == 6

    up = FakeBulk()
    second = log_for(LOAN, up, wal=WriteAheadLog(folder))
    second.start()
    assert second.buffered == 6
    await second.close()
    # The same events (values carry the served time: identical to a log that never died).
    assert sorted(_values(up)) == sorted(_values(reference)) and len(up.records) == 6
    assert not folder.exists()  # all published: nothing left to replay

    third = log_for(LOAN, FakeBulk(), wal=WriteAheadLog(folder))
    third.start()
    assert third.buffered == 0
    await third.close()


async def test_published_segments_are_deleted_and_a_torn_frame_is_ignored(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=600)  # a segment every entry or two
    bulk = FakeBulk()
    log = log_for(LOAN, bulk, wal=wal)
    log.start()
    for _ in range(5):
        assert log.offer(entry(LOAN, rows=1))
    await drained(log)
    assert len(bulk.records) == 5
    assert len(list(tmp_path.glob("*.wal"))) <= 1  # only the segment being written
    bulk.failures = 10**6
    assert log.offer(entry(LOAN, rows=2))
    await asyncio.sleep(0.02)
    await _killed(log)
    # The process died in the middle of writing a frame.
    (last,) = sorted(tmp_path.glob("*.wal"))[-1:]
    with open(last, "ab") as f:
        f.write(b"\x40\x00\x00\x00partial")
    again = WriteAheadLog(tmp_path)
    recovered = list(again.recover())
    assert [s.prediction_ids for s in recovered] == [["p0", "p1"]]
    assert os.path.getsize(last) > 0
    with pytest.raises(ConfigError, match="predlog_wal_dir"):
        WriteAheadLog(tmp_path)  # a second replica on the same folder


def _ids(bulk: FakeBulk) -> list[bytes]:
    return sorted(r.event_id for _, r in bulk.records)


def _served(*ids: str) -> Served:
    return dataclasses.replace(entry(LOAN, rows=len(ids)), prediction_ids=list(ids))


async def test_after_a_kill_only_what_was_not_published_is_published(tmp_path: Path) -> None:
    """One segment holds entries on Kafka and entries not yet sent: only the latter go again."""
    bulk = FakeBulk()
    first = log_for(LOAN, bulk, wal=WriteAheadLog(tmp_path))
    first.start()
    assert first.offer(_served("a", "b"))
    await drained(first)
    bulk.failures = 10**6  # Kafka gone: the next entry stays in the buffer (same segment)
    assert first.offer(_served("c"))
    await asyncio.sleep(0.05)
    await _killed(first)
    assert len(list(tmp_path.glob("*.wal"))) == 1 and _ids(bulk) == [b"a", b"b"]

    bulk.failures = 0
    second = log_for(LOAN, bulk, wal=WriteAheadLog(tmp_path))
    second.start()
    assert second.buffered == 1
    await second.close()
    assert _ids(bulk) == [b"a", b"b", b"c"]


async def test_entries_on_kafka_that_the_mark_missed_are_found_on_the_topic(tmp_path: Path) -> None:
    """Killed after Kafka took a publish, before the mark was written: looked up, not resent."""
    bulk = FakeBulk()
    wal = WriteAheadLog(tmp_path)
    first = log_for(LOAN, bulk, wal=wal)
    wal.published = lambda entries: None  # type: ignore[method-assign]  # dies before each mark
    first.start()
    assert first.offer(_served("a", "b")) and first.offer(_served("c"))
    async with asyncio.timeout(5):
        while len(bulk.records) < 3:
            await asyncio.sleep(0.01)
    await _killed(first)

    second = log_for(LOAN, bulk, wal=WriteAheadLog(tmp_path))
    second.start()
    assert second.buffered == 3  # the file alone cannot tell
    assert second.offer(_served("d"))
    await second.close()
    assert _ids(bulk) == [b"a", b"b", b"c", b"d"] and second.found_logged == 3
    # Looked up from the first entry's serving time (less the clock margin), not earlier.
    (since_ms,) = bulk.lookups
    assert 0 < time.time() * 1000 - since_ms < 10_000


def _written(folder: Path, entries: int) -> Path:
    """A segment holding ``entries`` one-row entries, left behind by a dead process."""
    wal = WriteAheadLog(folder)
    for _ in range(entries):
        wal.append(entry(LOAN, rows=1))
    os.close(wal._fd)
    os.close(wal._mark_fd)
    os.close(wal._lock)
    (segment,) = folder.glob("*.wal")
    return segment


def test_a_damaged_frame_ends_its_segment_and_the_file_is_kept_aside(tmp_path: Path) -> None:
    segment = _written(tmp_path, 3)
    data = bytearray(segment.read_bytes())
    data[-5] ^= 0xFF  # a flipped byte inside the last entry
    segment.write_bytes(bytes(data))
    recovered = list(WriteAheadLog(tmp_path).recover())
    assert len(recovered) == 2  # the two entries before the damage, not a misparsed third
    assert (tmp_path / (segment.name + ".damaged")).read_bytes() == bytes(data)


def test_a_segment_of_another_format_is_refused_at_start_naming_the_file(tmp_path: Path) -> None:
    segment = _written(tmp_path, 1)
    data = bytearray(segment.read_bytes())
    data[6:8] = (99).to_bytes(2, "little")  # written by a later release
    segment.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=f"{segment.name} has format 99"):
        WriteAheadLog(tmp_path)
    assert segment.exists()  # nothing is deleted: the release that wrote it can drain it
    WriteAheadLog(tmp_path / "other")  # the refused folder's lock was released


def test_segments_written_before_format_versions_are_still_replayed(tmp_path: Path) -> None:
    from services.gateway import writeahead

    served = [entry(LOAN, rows=1), entry(LOAN, rows=2)]
    frames = [writeahead._encode(s) for s in served]
    legacy = b"".join(writeahead._LEN.pack(len(f)) + f for f in frames)
    (tmp_path / "predlog-000000000007.wal").write_bytes(legacy)
    recovered = list(WriteAheadLog(tmp_path).recover())
    assert [r.prediction_ids for r in recovered] == [s.prediction_ids for s in served]
