"""Attacks with compression bombs on the raw topics (issue #16, "Trust": hostile input
everywhere it enters): a record batch of a few KiB, within the broker's limits, that inflates
to hundreds of MiB in the consumer.

On real Kafka with ingestion in this process (as producers of every team reach it): gzip and
zstd bombs between valid records. Ingestion must not buffer them (its resident memory grows
far less than a bomb inflates to), must dead-letter each with a reason naming the cap and
its offsets (no payload), and must ingest every valid record around them.

The bombs are record batches built by hand (a producer would inflate them first, in this
process) and sent in a plain ProduceRequest: the broker checks them as it checks any batch.
zstd's needs no zstd library: its records are raw and RLE blocks.
"""

from __future__ import annotations

import functools
import json
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.util import calc_crc32c, encode_varint
from pydantic import SecretStr

from aifactory.ingestion.v1 import events_pb2 as ingestion_events
from libs.auth import DevAuth
from libs.usecase import load_default
from tests.security.conftest import attack
from tests.security.hostile import Letter, committed, create_topics, read_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

UC = "loan_approval"
MiB = 1 << 20
# Each bomb: this many records of 1 MiB of zeros (a few KiB compressed).
BOMB_RECORDS = 256
# Ingestion's cap per batch after decompression in this test (the default is 64 MiB).
CAP = 8 * MiB
# Growth of ingestion's resident memory allowed while it meets the bombs: well under one
# bomb (256 MiB), well over the cap (two copies of a capped batch, and the service's own work).
RSS_BOUND = 96 * MiB
GZIP, ZSTD = 1, 4


def _varint(value: int) -> bytes:
    out = bytearray()
    encode_varint(value, out.append)
    return bytes(out)


def _record_parts(index: int, size: int) -> tuple[bytes, bytes]:
    """A v2 record whose value is ``size`` zero bytes, as (what precedes the value, what follows)."""
    head = b"\x00" + _varint(0) + _varint(index) + _varint(-1) + _varint(size)
    tail = _varint(0)  # no headers
    return _varint(len(head) + size + len(tail)) + head, tail


def _gzip_records(count: int, size: int) -> bytes:
    zeros = bytes(size)
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [b""]
    for i in range(count):
        head, tail = _record_parts(i, size)
        out += [deflate.compress(head), deflate.compress(zeros), deflate.compress(tail)]
    out.append(deflate.flush())
    return b"".join(out)


def _zstd_records(count: int, size: int) -> bytes:
    """A zstd frame of raw blocks (record framing) and RLE blocks (the zeros): valid zstd."""
    block = 128 * 1024
    out = [struct.pack("<I", 0xFD2FB528), bytes([0x00, 7 << 3])]  # no content size; 128 KiB window
    pending = b""
    for i in range(count):
        head, tail = _record_parts(i, size)
        out.append(struct.pack("<I", (len(pending + head) << 3))[:3] + pending + head)  # raw
        left = size
        while left:
            n = min(block, left)
            out.append(struct.pack("<I", (n << 3) | (1 << 1))[:3] + b"\x00")  # RLE of zeros
            left -= n
        pending = tail
    out.append(struct.pack("<I", (len(pending) << 3) | 1)[:3] + pending)  # raw, last
    return b"".join(out)


def record_batch(codec: int, count: int, compressed: bytes) -> bytes:
    """A v2 record batch (not transactional, no producer id) of ``count`` records."""
    now = int(time.time() * 1000)
    body = struct.pack(">hiqqqhii", codec, count - 1, now, now, -1, -1, -1, count) + compressed
    crc = calc_crc32c(body)
    return struct.pack(">qiibI", 0, 4 + 1 + 4 + len(body), -1, 2, crc) + body


async def produce_raw(producer: AIOKafkaProducer, topic: str, batch: bytes) -> int:
    """Appends ``batch`` as it is to partition 0 of ``topic``; its base offset."""
    client = producer.client
    node = client.cluster.leader_for_partition(TopicPartition(topic, 0))
    response = await client.send(node, ProduceRequest(None, -1, 30_000, [(topic, [(0, batch)])]))
    (_, partitions), *_ = response.topics
    partition, error, offset, *_ = partitions[0]
    assert error == 0, f"the broker refused the batch: error {error}"
    return int(offset)


class PeakRss:
    """The highest resident memory of this process, sampled every few ms in a thread."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.baseline = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@pytest.fixture
def bombs() -> Iterator[dict[str, bytes]]:
    """Built before memory is measured: each bomb batch by its codec."""
    yield {
        "gzip": record_batch(GZIP, BOMB_RECORDS, _gzip_records(BOMB_RECORDS, MiB)),
        "zstd": record_batch(ZSTD, BOMB_RECORDS, _zstd_records(BOMB_RECORDS, MiB)),
    }


async def test_compression_bombs_are_dead_lettered_unbuffered(
    kafka, dev_auth: DevAuth, tmp_path: Path, bombs: dict[str, bytes]
) -> None:  # type: ignore[no-untyped-def]
    from libs.runtime import start_service
    from services.ingestion.app import build
    from services.ingestion.settings import IngestionSettings
    from tests.security.test_hostile_topics import loan_record

    run = uuid.uuid4().hex[:8]
    settings = IngestionSettings(
        grpc_port=0,
        metrics_port=0,
        kafka_bootstrap=kafka.bootstrap_servers,
        auth_dir=dev_auth.directory,
        privacy_salt=SecretStr(dev_auth.env()["AIF_PRIVACY_SALT"]),
        data_dir=tmp_path / "raw",
        consumer_group=f"bomb-ingestion-{run}",
        instance_id=f"bomb-{run}",
        raw_topic_pattern=f"bomb.{run}.{{use_case}}.raw",
        records_topic=f"bomb.records.{run}",
        dead_letter_topic=f"bomb.dlq.{run}",
        quality_topic=f"bomb.quality.{run}",
        topic_partitions=1,
        records_per_message=1,
        kafka_max_batch_bytes=CAP,
    )
    raw = settings.raw_topic(UC)
    await create_topics(kafka.bootstrap_servers, [raw, settings.records_topic, settings.dead_letter_topic])
    valid: list[str] = []
    bomb_offsets: dict[str, tuple[int, int]] = {}
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()

    async def send_valid(n: int) -> None:
        for _ in range(n):
            record_id = f"ok-{len(valid)}-{run}"
            valid.append(record_id)
            await producer.send_and_wait(
                raw, json.dumps({**loan_record(), "record_id": record_id}, default=str).encode()
            )

    service, _ = await start_service(settings, functools.partial(build, usecases=load_default()))
    await service.server.start()
    try:
        await send_valid(3)
        # Ingestion is up and has read the first valid records before memory is measured.
        await read_until(kafka.bootstrap_servers, settings.records_topic, lambda rs: len(rs) >= 1, 60)
        started = time.monotonic()
        with PeakRss() as rss:
            for name, batch in bombs.items():
                first = await produce_raw(producer, raw, batch)
                bomb_offsets[name] = (first, first + BOMB_RECORDS - 1)
                await send_valid(3)
            accepted = await read_until(
                kafka.bootstrap_servers,
                settings.records_topic,
                lambda rs: len(_accepted_ids(rs)) >= len(valid),
                120,
            )
            letters = await read_until(
                kafka.bootstrap_servers, settings.dead_letter_topic, lambda ls: len(ls) >= len(bombs), 60
            )
        took = time.monotonic() - started
        done = await committed(kafka.bootstrap_servers, settings.consumer_group, raw)
    finally:
        await producer.stop()
        await service.server.stop()
        await service.close()

    inflated = BOMB_RECORDS * MiB
    print(
        f"compression bombs: {len(bombs)} x {inflated // MiB} MiB inflated ({', '.join(f'{n} {len(b)} B' for n, b in bombs.items())}),"
        f" ingestion RSS baseline {rss.baseline / MiB:.0f} MiB, peak growth {rss.growth / MiB:.1f} MiB"
        f" (bound {RSS_BOUND // MiB} MiB), handled in {took:.1f}s"
    )
    # Every attack is counted before any assertion, so a failing run reports them all.
    buffered = rss.growth > RSS_BOUND
    attack(succeeded=buffered)
    missing = sorted(set(valid) - _accepted_ids(accepted))
    attack(succeeded=bool(missing))
    events = [ingestion_events.RecordRejected.FromString(letter.value) for letter in letters]
    wrong: dict[str, str] = {}
    for name, (first, last) in bomb_offsets.items():
        found = [e for e in events if (e.source_topic, e.source_partition, e.source_offset) == (raw, 0, last)]
        if not found:
            wrong[name] = f"not dead-lettered (offsets {first}-{last}): {[str(e.violations) for e in events]}"
        else:
            letter = found[0]
            message = letter.violations[0].message
            if not (
                letter.violations[0].code == "too_large"
                and f"cap of {CAP} bytes" in message
                and f"{raw}/0 offsets {first}-{last}" in message
                and not letter.original
            ):
                wrong[name] = f"dead letter {letter.violations} ({len(letter.original)} B kept)"
        attack(succeeded=name in wrong)
    assert not buffered, f"ingestion grew by {rss.growth / MiB:.0f} MiB meeting {inflated // MiB} MiB bombs"
    assert not missing, f"valid records lost around the bombs: {missing}"
    assert not wrong, wrong
    past = done > max(last for _, last in bomb_offsets.values())
    assert past, f"ingestion committed {done}, not past the bombs {bomb_offsets}"


def _accepted_ids(letters: list[Letter]) -> set[str]:
    return {ingestion_events.RecordAccepted.FromString(x.value).record.record_id for x in letters}
