"""Ingestion on the real broker: contracts, dead letters with every reason, exactly once across a crash.

Producers here are outside clients (a plain aiokafka producer, kcat): no aif-* headers.
Every test uses its own topics, consumer group, transactional id and data dir.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from aif.datagen import LoanStream, SegmentStream, to_json
from aif.stack.catalogue import new_topic as new_catalogue_topic
from aif.stack.catalogue import seed_catalogue_sync
from aifactory.common.v1 import common_pb2
from aifactory.ingestion.v1 import events_pb2
from aifactory.ingestion.v1 import ingestion_service_pb2 as pb
from aifactory.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc
from libs.bus import DeadLetters, Event, EventConsumer, EventPublisher
from libs.rpc import insecure_channel
from libs.runtime import WORKER_FAILED, Service, start_service
from libs.usecase import load_default
from services.ingestion.app import build
from services.ingestion.pii import pseudonym
from services.ingestion.publisher import accepted_in
from services.ingestion.records import UseCaseIngestor
from services.ingestion.settings import IngestionSettings
from services.ingestion.store import RawDataset

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SALT = "integration-salt"
MAX_PAYLOAD = 4096
UC = "loan_approval"
ROOT = Path(__file__).resolve().parents[2]


# -- the stream: valid loan applications with a known set of bad ones -------------------------------


@dataclass(frozen=True)
class Sent:
    payload: bytes
    key: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    # None: valid. Otherwise the (field, code) pairs the dead letter must carry.
    expected: frozenset[tuple[str, str]] | None = None
    record_id: str | None = None  # a valid record's own id (None: derived from its offset)
    name: str = ""  # a valid record's applicant name, to check it is never published in clear


def _value(v: Any) -> common_pb2.Value:
    if isinstance(v, str):
        return common_pb2.Value(string_value=v)
    if isinstance(v, int):
        return common_pb2.Value(int64_value=v)
    return common_pb2.Value(double_value=v)


def _protobuf(record: dict[str, Any], record_id: str) -> bytes:
    msg = common_pb2.Record(
        use_case=UC,
        entity_id=record["applicant_id"],
        record_id=record_id,
        fields={k: _value(v) for k, v in record.items() if k not in ("applicant_id", "event_time")},
    )
    msg.event_time.FromDatetime(record["event_time"])
    return msg.SerializeToString()


BAD_KINDS = 11


def _bad(kind: int, i: int, rec: dict[str, Any]) -> tuple[bytes, frozenset[tuple[str, str]]]:
    """The i-th bad record, of one of eleven kinds; unique bytes so each is identifiable."""
    rid = {"record_id": f"bad-{i}"}
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    cases: list[tuple[Any, set[tuple[str, str]]]] = [
        ({**{k: v for k, v in rec.items() if k != "salary"}, **rid}, {("salary", "required")}),
        ({**rec, **rid, "age": "forty"}, {("age", "type")}),
        ({**rec, **rid, "age": 150}, {("age", "range")}),
        ({**rec, **rid, "elevel": 9}, {("elevel", "enum")}),
        ({**rec, **rid, "event_time": future}, {("event_time", "future")}),
        (b'{"not json ' + str(i).encode(), {("", "parse")}),
        (b'{"applicant_id": "bad-' + str(i).encode() + b'-\xff\xfe"}', {("", "encoding")}),
        ({**rec, **rid, "padding": "x" * MAX_PAYLOAD}, {("", "too_large")}),
        ([rec["applicant_id"], i], {("", "not_object")}),
        ({**rec, **rid, "colour": "red"}, {("colour", "unknown_field")}),
        (
            {
                **{k: v for k, v in rec.items() if k != "loan"},
                **rid,
                "age": 7,
                "zipcode": "north",
                "gender": "q",
                "nickname": "zed",
            },
            {
                ("loan", "required"),
                ("age", "range"),
                ("zipcode", "type"),
                ("gender", "enum"),
                ("nickname", "unknown_field"),
            },
        ),
    ]
    body, expected = cases[kind]
    payload = body if isinstance(body, bytes) else to_json(body)
    return payload, frozenset(expected)


def loan_messages(n: int = 10_000, seed: int = 11, bad_every: int = 45, bad_total: int = 220) -> list[Sent]:
    out: list[Sent] = []
    bad = 0
    for i, example in zip(range(n), LoanStream(seed=seed), strict=False):
        rec, key = example.record, example.entity_id.encode()
        if i % bad_every == 7 and bad < bad_total:
            payload, expected = _bad(bad % BAD_KINDS, i, rec)
            out.append(Sent(payload, key, expected=expected))
            bad += 1
        elif i % 100 == 11:  # a protobuf producer
            out.append(
                Sent(
                    _protobuf(rec, example.record_id),
                    key,
                    (("content-type", b"application/x-protobuf"),),
                    record_id=example.record_id,
                    name=rec["applicant_name"],
                )
            )
        elif i % 200 == 3:  # no record id: ingestion derives one from the offset
            out.append(Sent(to_json(rec), key, name=rec["applicant_name"]))
        else:
            out.append(
                Sent(
                    to_json({**rec, "record_id": example.record_id}),
                    key,
                    record_id=example.record_id,
                    name=rec["applicant_name"],
                )
            )
    return out


async def produce(bootstrap: str, topic: str, messages: list[Sent]) -> list[tuple[int, int]]:
    """Send as an outside client would (no aif-* headers); (partition, offset) of each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, m.payload, key=m.key, headers=list(m.headers) or None)
            for m in messages
        ]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metas]


# -- reading back ---------------------------------------------------------------------------------

RECORD_PARTITIONS = 3


async def read_topic(bootstrap: str, topic: str, partitions: int = RECORD_PARTITIONS) -> list[ConsumerRecord]:
    """Everything committed in ``topic`` up to its current end (read_committed, as downstream reads)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        async with asyncio.timeout(60):
            while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
                for batch in (await consumer.getmany(*tps, timeout_ms=300)).values():
                    records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def committed_total(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(max(o.offset, 0) for o in offsets.values())
    finally:
        await admin.close()


async def wait_committed(bootstrap: str, group: str, n: int, timeout: float = 90) -> None:
    """Until the ingestion group has committed ``n`` raw offsets (every record decided)."""
    async with asyncio.timeout(timeout):
        while await committed_total(bootstrap, group) < n:
            await asyncio.sleep(0.1)


# -- the service under test -----------------------------------------------------------------------


@dataclass
class Topics:
    raw: str
    records: str
    dlq: str
    quality: str
    group: str
    instance: str


async def make_topics(bootstrap: str, prefix: str) -> Topics:
    run = uuid.uuid4().hex[:10]
    t = Topics(
        f"{prefix}.{run}.{UC}.raw",
        f"{prefix}.{run}.records",
        f"{prefix}.{run}.dlq",
        f"{prefix}.{run}.quality",
        f"ingestion-{run}",
        run,
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, RECORD_PARTITIONS, 1) for n in (t.raw, t.records, t.dlq, t.quality)]
        )
    finally:
        await admin.close()
    return t


def settings_values(bootstrap: str, t: Topics, data_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "kafka_bootstrap": bootstrap,
        "grpc_port": 0,
        "metrics_port": 0,
        "raw_topic_pattern": t.raw.replace(UC, "{use_case}"),
        "records_topic": t.records,
        "dead_letter_topic": t.dlq,
        "quality_topic": t.quality,
        "consumer_group": t.group,
        "instance_id": t.instance,
        "data_dir": str(data_dir),
        "privacy_salt": SALT,
        "max_payload_bytes": MAX_PAYLOAD,
        "drain_seconds": 0.2,
        "quality_window_seconds": 1.0,
        "auth_mode": "off",
        **extra,
    }


@asynccontextmanager
async def running(values: dict[str, Any]) -> AsyncIterator[tuple[Service, int]]:
    """The ingestion service in this process: gRPC server, pipeline and quality reporter."""
    service, _ = await start_service(
        IngestionSettings.model_validate(values), functools.partial(build, usecases=load_default())
    )
    port = await service.server.start()
    try:
        yield service, port
    finally:
        await service.server.stop()
        await service.close()


def dataset_of(data_dir: Path) -> RawDataset:
    from libs.usecase import load_default

    uc = load_default()[UC]
    ing = UseCaseIngestor(uc, salt=SALT.encode(), max_payload_bytes=MAX_PAYLOAD)
    return RawDataset(data_dir, {UC: uc}, {UC: ing.privacy})


# -- assertions shared by the stream tests -------------------------------------------------------


def check_exactly_once(
    messages: list[Sent],
    coords: list[tuple[int, int]],
    t: Topics,
    records: list[ConsumerRecord],
    dead: list[ConsumerRecord],
    data_dir: Path,
) -> None:
    valid = [(m, c) for m, c in zip(messages, coords, strict=True) if m.expected is None]
    expected_ids = {m.record_id or f"kafka:{t.raw}:{p}:{o}" for m, (p, o) in valid}
    assert len(expected_ids) == len(valid)

    events = [e for r in records for e in accepted_in(r.value, r.headers)]
    ids = [e.record.record_id for e in events]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} records published twice, e.g. {duplicates[:3]}"
    assert set(ids) == expected_ids and len(ids) == len(valid)
    assert len(records) < len(events) / 10  # sent in batches, not one message per record
    partitions = sorted(range(RECORD_PARTITIONS))
    for record in records:
        headers = dict(record.headers)
        members = accepted_in(record.value, record.headers)
        if len(members) == 1:  # a lone record: keyed by its entity, its id the event id
            assert headers["aif-event-type"] == b"aifactory.ingestion.v1.RecordAccepted"
            assert record.key == f"{UC}/{members[0].record.entity_id}".encode()
            assert headers["aif-event-id"].decode() == members[0].record.record_id
        else:
            assert headers["aif-event-type"] == b"aifactory.ingestion.v1.RecordAcceptedBatch"
            assert record.key is None and headers["aif-batch-size"] == str(len(members)).encode()
        for event in members:  # every record sits where its entity key puts it
            key = f"{UC}/{event.record.entity_id}".encode()
            assert DefaultPartitioner()(key, partitions, partitions) == record.partition
    names = {m.name for m, _ in valid}
    for event in events:
        assert event.schema_version == f"{UC}@1" and event.record.use_case == UC
        name = event.record.fields["applicant_name"].string_value
        assert name not in names and len(name) == 64  # hashed, never in clear
    assert pseudonym(valid[0][0].name, SALT.encode()) in {
        e.record.fields["applicant_name"].string_value for e in events
    }

    # Dead letters carry the payload masked (the name hashed), so they are matched by where
    # their record was, not by its bytes.
    bad = {c: m for m, c in zip(messages, coords, strict=True) if m.expected is not None}
    rejected = [events_pb2.RecordRejected.FromString(r.value) for r in dead]
    sources = Counter((e.source_partition, e.source_offset) for e in rejected)
    assert set(sources) == set(bad) and max(sources.values()) == 1, "each bad record exactly once"
    for event, record in zip(rejected, dead, strict=True):
        sent = bad[(event.source_partition, event.source_offset)]
        got = {(v.field, v.code) for v in event.violations}
        assert got == sent.expected, (event.original[:80], got)
        assert not sent.name or sent.name.encode() not in event.original, "a clear name in a dead letter"
        assert event.source_topic == t.raw and event.use_case == UC
        assert (
            dict(record.headers)["aif-dlq-source"].decode()
            == f"{t.raw}/{event.source_partition}/{event.source_offset}"
        )

    # the raw dataset holds every accepted record once, at the version stamped on the last ones
    dataset = dataset_of(data_dir)
    latest = dataset.get(UC)
    assert latest.rows == len(valid)
    table = dataset.read(UC)
    assert sorted(table.column("_record_id").to_pylist()) == sorted(expected_ids)
    assert latest.version in {e.dataset.version for e in events}
    assert all(e.dataset.version for e in events)


# -- tests -----------------------------------------------------------------------------------------


async def test_10k_records_with_injected_bad_ones(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bootstrap = kafka.bootstrap_servers
    t = await make_topics(bootstrap, "it-ingest")
    messages = loan_messages()
    assert sum(m.expected is not None for m in messages) == 220
    coords = await produce(bootstrap, t.raw, messages)
    async with running(settings_values(bootstrap, t, tmp_path / "raw")):
        await wait_committed(bootstrap, t.group, len(messages))
    records, dead = await read_topic(bootstrap, t.records), await read_topic(bootstrap, t.dlq)
    check_exactly_once(messages, coords, t, records, dead, tmp_path / "raw")

    reports = [events_pb2.QualityReport.FromString(r.value) for r in await read_topic(bootstrap, t.quality)]
    mine = [r for r in reports if r.use_case == UC]
    assert sum(r.record_count for r in mine) == 10_000 and sum(r.rejected_count for r in mine) == 220
    by_code: Counter[str] = Counter()
    for r in mine:
        by_code.update(dict(r.rejections_by_code))
    assert by_code["parse"] == by_code["not_object"] == by_code["too_large"] == 20
    assert by_code["range"] == 40 and by_code["unknown_field"] == 40 and by_code["required"] == 40


# The service as a process learns its use cases from a catalogue topic, seeded here with
# the shipped specs as the registry would publish them.
CATALOGUE = new_catalogue_topic("it-ingestion")


@pytest.fixture(scope="module", autouse=True)
def catalogue(kafka) -> None:  # type: ignore[no-untyped-def]
    seed_catalogue_sync(kafka.bootstrap_servers, CATALOGUE)


def service_env(values: dict[str, Any]) -> dict[str, str]:
    return {
        **os.environ,
        "AIF_AUTH_MODE": "off",
        "AIF_LOG_LEVEL": "WARNING",
        "AIF_INGESTION_USECASES_TOPIC": CATALOGUE,
        **{f"AIF_INGESTION_{k.upper()}": str(v) for k, v in values.items()},
    }


def start_process(env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, *(args or ("-m", "services.ingestion"))]
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


async def test_restart_mid_stream_loses_and_doubles_nothing(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL the ingestion process halfway; the restarted one finishes the job exactly once,
    and its quality windows, open across the kill, count every record exactly once too."""
    bootstrap = kafka.bootstrap_servers
    t = await make_topics(bootstrap, "it-crash")
    messages = loan_messages()
    half = len(messages) // 2
    coords = await produce(bootstrap, t.raw, messages[:half])
    # One window for the whole run: it is open when the first process dies.
    env = service_env(
        settings_values(bootstrap, t, tmp_path / "raw", max_batch=100, quality_window_seconds=3600)
    )
    log_path = tmp_path / "ingestion.log"

    first = start_process(env, log_path)
    try:
        await wait_committed(bootstrap, t.group, 1_500, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    at_kill = await committed_total(bootstrap, t.group)
    assert at_kill < half, "killed after it had finished: not a mid-stream crash"

    coords += await produce(bootstrap, t.raw, messages[half:])
    second = start_process(env, log_path)
    try:
        await wait_committed(bootstrap, t.group, len(messages), timeout=90)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log_path.read_text()[-3000:]
    records, dead = await read_topic(bootstrap, t.records), await read_topic(bootstrap, t.dlq)
    check_exactly_once(messages, coords, t, records, dead, tmp_path / "raw")
    reports = [events_pb2.QualityReport.FromString(r.value) for r in await read_topic(bootstrap, t.quality)]
    # Closed at the clean stop: the first process's share was resumed, none of it twice.
    assert [(r.record_count, r.rejected_count) for r in reports] == [(len(messages), 220)]


async def finish_and_check(
    env: dict[str, str],
    log_path: Path,
    t: Topics,
    messages: list[Sent],
    coords: list[tuple[int, int]],
    data_dir: Path,
    bootstrap: str,
) -> None:
    """Runs the service until it has decided every record, stops it cleanly, and checks
    the whole stream was published exactly once."""
    service = start_process(env, log_path)
    try:
        await wait_committed(bootstrap, t.group, len(messages), timeout=60)
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(30) == 0, log_path.read_text()[-3000:]
    records, dead = await read_topic(bootstrap, t.records), await read_topic(bootstrap, t.dlq)
    check_exactly_once(messages, coords, t, records, dead, data_dir)


@pytest.mark.parametrize("phase", ["in-transaction", "after-commit"])
async def test_crash_at_each_point_of_a_batch(kafka, tmp_path: Path, phase: str) -> None:  # type: ignore[no-untyped-def]
    """Dies inside the 5th transaction (must be aborted and replayed) or between its commit and the
    dataset publish (must not be replayed; the restart publishes the committed files)."""
    bootstrap = kafka.bootstrap_servers
    t = await make_topics(bootstrap, f"it-{phase}")
    messages = loan_messages(n=2_000, bad_total=44)
    coords = await produce(bootstrap, t.raw, messages)
    env = service_env(settings_values(bootstrap, t, tmp_path / "raw", max_batch=100))
    log_path = tmp_path / "ingestion.log"
    crasher = start_process(env, log_path, str(Path(__file__).with_name("ingestion_crasher.py")), phase, "5")
    assert crasher.wait(60) == 17, log_path.read_text()[-3000:]
    assert 0 < await committed_total(bootstrap, t.group) < len(messages)

    await finish_and_check(env, log_path, t, messages, coords, tmp_path / "raw", bootstrap)
    settled = "deleted 1 uncommitted" if phase == "in-transaction" else "published 1 committed file(s)"
    assert settled in log_path.read_text()


async def test_a_batch_that_hangs_ends_the_process_and_the_restart_finishes(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The 5th transaction's commit never returns: no error, no retry. The stall watchdog
    sees records waiting behind offsets that do not move, the process exits 70 for its
    supervisor, and the next one finishes the stream exactly once."""
    bootstrap = kafka.bootstrap_servers
    t = await make_topics(bootstrap, "it-hang")
    messages = loan_messages(n=2_000, bad_total=44)
    coords = await produce(bootstrap, t.raw, messages)
    env = service_env(settings_values(bootstrap, t, tmp_path / "raw", max_batch=100, stall_timeout_s=5))
    log_path = tmp_path / "ingestion.log"
    hanging = start_process(env, log_path, str(Path(__file__).with_name("ingestion_crasher.py")), "hang", "5")
    try:
        async with asyncio.timeout(60):
            while "hanging in the commit" not in log_path.read_text():
                await asyncio.sleep(0.1)
        hung_at = time.monotonic()
        assert await asyncio.to_thread(hanging.wait, 90) == WORKER_FAILED, log_path.read_text()[-3000:]
    finally:
        if hanging.poll() is None:
            hanging.kill()
    exited_after = time.monotonic() - hung_at
    assert "ingestion pipeline stalled: records waiting" in log_path.read_text()
    assert 0 < await committed_total(bootstrap, t.group) < len(messages)

    await finish_and_check(env, log_path, t, messages, coords, tmp_path / "raw", bootstrap)
    print(
        f"hung batch: process exited {exited_after:.1f}s after the hang (stall timeout 5s, lag refresh 10s)"
    )


async def test_kcat_as_an_outside_producer(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bootstrap = kafka.bootstrap_servers
    t = await make_topics(bootstrap, "it-kcat")
    good = {
        "applicant_id": "k-1",
        "event_time": "2026-01-01T10:00:00Z",
        "salary": "50000",
        "commission": 0,
        "age": 30,
        "elevel": 2,
        "car": 3,
        "zipcode": 4,
        "hvalue": 1e5,
        "hyears": 5,
        "loan": 1e4,
        "record_id": "kcat-1",
        "applicant_name": "Radia Perlman",
    }
    lines = json.dumps(good) + "\n" + json.dumps({**good, "record_id": "kcat-2", "age": 12}) + "\n"
    subprocess.run(
        ["kcat", "-P", "-b", bootstrap, "-t", t.raw, "-k", "k-1", "-H", "source=kcat"],
        input=lines.encode(),
        check=True,
        timeout=30,
    )
    record = common_pb2.Record(
        use_case=UC,
        entity_id="k-2",
        record_id="kcat-pb",
        fields={
            k: _value(v)
            for k, v in {**good, "salary": 1.0}.items()
            if k not in ("applicant_id", "event_time", "record_id")
        },
    )
    record.event_time.FromJsonString("2026-01-01T10:00:00Z")
    (tmp_path / "record.pb").write_bytes(record.SerializeToString())
    subprocess.run(
        [
            "kcat",
            "-P",
            "-b",
            bootstrap,
            "-t",
            t.raw,
            "-H",
            "content-type=application/x-protobuf",
            str(tmp_path / "record.pb"),
        ],
        check=True,
        timeout=30,
    )
    async with running(settings_values(bootstrap, t, tmp_path / "raw")):
        await wait_committed(bootstrap, t.group, 3)
    accepted = {
        e.record.record_id: e
        for r in await read_topic(bootstrap, t.records)
        for e in accepted_in(r.value, r.headers)
    }
    assert set(accepted) == {"kcat-1", "kcat-pb"}
    assert accepted["kcat-1"].record.fields["salary"].double_value == 50000.0  # "50000" coerced
    assert accepted["kcat-pb"].record.entity_id == "k-2"
    (dead,) = [events_pb2.RecordRejected.FromString(r.value) for r in await read_topic(bootstrap, t.dlq)]
    assert dead.record_id == "kcat-2" and [(v.field, v.code) for v in dead.violations] == [("age", "range")]
    assert b"Radia" not in b"".join(r.value for r in await read_topic(bootstrap, t.records))


# -- gRPC -------------------------------------------------------------------------------------------


def _json_item(record: dict[str, Any]) -> pb.IngestItem:
    return pb.IngestItem(json=to_json(record).decode())


@pytest.fixture
async def grpc_service(kafka, tmp_path: Path) -> AsyncIterator[tuple[pb_grpc.IngestionServiceStub, Topics]]:  # type: ignore[no-untyped-def]
    t = await make_topics(kafka.bootstrap_servers, "it-grpc")
    async with running(settings_values(kafka.bootstrap_servers, t, tmp_path / "raw", consume=False)) as (
        _,
        port,
    ):
        async with insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.IngestionServiceStub(channel), t


async def test_grpc_ingest_batch(kafka, grpc_service) -> None:  # type: ignore[no-untyped-def]
    stub, t = grpc_service
    examples = [e.record for e, _ in zip(LoanStream(seed=5), range(4), strict=False)]
    items = [
        _json_item(examples[0]),
        _json_item({**examples[1], "age": 300, "gender": "z"}),
        pb.IngestItem(
            record=common_pb2.Record(
                entity_id=examples[2]["applicant_id"],
                record_id="own-id",
                fields={
                    k: _value(v) for k, v in examples[2].items() if k not in ("applicant_id", "event_time")
                },
            )
        ),
        pb.IngestItem(json="[1, 2]"),
        pb.IngestItem(),
    ]
    items[2].record.event_time.FromDatetime(examples[2]["event_time"])
    reply = await stub.Ingest(pb.IngestRequest(use_case=UC, items=items, request_id="req-1"))
    assert [r.accepted for r in reply.results] == [True, False, True, False, False]
    assert [r.record_id for r in reply.results] == [
        "grpc:req-1:0",
        "grpc:req-1:1",
        "own-id",
        "grpc:req-1:3",
        "grpc:req-1:4",
    ]
    assert {(v.field, v.code) for v in reply.results[1].violations} == {("age", "range"), ("gender", "enum")}
    assert [v.code for v in reply.results[3].violations] == ["not_object"]
    assert (reply.accepted_count, reply.rejected_count) == (2, 3) and reply.dataset.version

    # a retry with the same request id yields the same ids (downstream deduplicates on them)
    again = await stub.Ingest(pb.IngestRequest(use_case=UC, items=items[:1], request_id="req-1"))
    assert again.results[0].record_id == "grpc:req-1:0"

    records = [
        e
        for r in await read_topic(kafka.bootstrap_servers, t.records)
        for e in accepted_in(r.value, r.headers)
    ]
    assert sorted(r.record.record_id for r in records) == ["grpc:req-1:0", "grpc:req-1:0", "own-id"]
    dead = [
        events_pb2.RecordRejected.FromString(r.value)
        for r in await read_topic(kafka.bootstrap_servers, t.dlq)
    ]
    assert sorted(d.record_id for d in dead) == ["grpc:req-1:1", "grpc:req-1:3", "grpc:req-1:4"]
    assert all(d.source_topic == "" for d in dead)

    ds = (await stub.GetDataset(pb.GetDatasetRequest(use_case=UC))).dataset
    assert ds.ref.version == again.dataset.version and ds.record_count == 3 and ds.parent_version
    assert ds.schema_version == f"{UC}@1" and ds.ref.uri.startswith("file://") and ds.file_count == 2
    first = (await stub.GetDataset(pb.GetDatasetRequest(use_case=UC, version=reply.dataset.version))).dataset
    assert first.record_count == 2 and first.parent_version == ""


async def test_grpc_ingest_errors(grpc_service) -> None:  # type: ignore[no-untyped-def]
    stub, _ = grpc_service
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Ingest(pb.IngestRequest(use_case="nope", items=[pb.IngestItem(json="{}")]))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Ingest(pb.IngestRequest(use_case=UC))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "items" in (info.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Ingest(pb.IngestRequest(items=[pb.IngestItem(json="{}")]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "use_case" in (
        info.value.details() or ""
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetDataset(pb.GetDatasetRequest(use_case=UC, version="0" * 64))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_grpc_ingest_stream(kafka, grpc_service) -> None:  # type: ignore[no-untyped-def]
    stub, t = grpc_service
    examples = [e.record for e, _ in zip(LoanStream(seed=6), range(250), strict=False)]

    async def chunks() -> AsyncIterator[pb.IngestStreamRequest]:
        for start in range(0, 250, 100):
            items = [
                _json_item(r if i % 50 else {**r, "loan": -1.0})
                for i, r in enumerate(examples[start : start + 100], start)
            ]
            yield pb.IngestStreamRequest(use_case=UC, items=items, request_id="s-1")

    summary = await stub.IngestStream(chunks())
    assert (summary.received_count, summary.accepted_count, summary.rejected_count) == (250, 245, 5)
    assert [r.index for r in summary.rejected] == [0, 50, 100, 150, 200]
    assert all([(v.field, v.code) for v in r.violations] == [("loan", "range")] for r in summary.rejected)
    assert summary.dataset.version
    records = await read_topic(kafka.bootstrap_servers, t.records)
    assert len({e.record.record_id for r in records for e in accepted_in(r.value, r.headers)}) == 245

    async def mixed() -> AsyncIterator[pb.IngestStreamRequest]:
        yield pb.IngestStreamRequest(use_case=UC, items=[_json_item(examples[1])])
        yield pb.IngestStreamRequest(use_case="image_segments", items=[_json_item(examples[2])])

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.IngestStream(mixed())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "use_case" in (
        info.value.details() or ""
    )

    async def empty() -> AsyncIterator[pb.IngestStreamRequest]:
        yield pb.IngestStreamRequest(use_case=UC)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.IngestStream(empty())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "items" in (info.value.details() or "")


async def test_service_exposes_quality_metrics(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The service process serves ingestion counters on its Prometheus endpoint."""
    bootstrap = kafka.bootstrap_servers
    t = await make_topics(bootstrap, "it-metrics")
    messages = loan_messages(n=300, bad_every=10, bad_total=22)
    await produce(bootstrap, t.raw, messages)
    with socket.socket() as sock:  # a free port for the metrics endpoint
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    values = settings_values(bootstrap, t, tmp_path / "raw", metrics_port=port)
    proc = start_process(service_env(values), tmp_path / "ingestion.log")
    try:
        await wait_committed(bootstrap, t.group, 300)
        with urllib.request.urlopen(f"http://127.0.0.1:{values['metrics_port']}/metrics", timeout=5) as r:
            body = r.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("aif_ingestion_")
    }
    accepted = next(
        v
        for k, v in lines.items()
        if k.startswith("aif_ingestion_records_total")
        and f'use_case="{UC}"' in k
        and 'outcome="accepted"' in k
    )
    rejected = next(
        v
        for k, v in lines.items()
        if k.startswith("aif_ingestion_records_total") and 'outcome="rejected"' in k
    )
    assert (accepted, rejected) == (278, 22)
    assert any(k.startswith("aif_ingestion_rejections_total") and 'code="parse"' in k for k in lines)


@pytest.mark.parametrize("per_message", [1, 100])
async def test_records_are_typed_events_for_libs_bus_consumers(
    kafka, tmp_path: Path, per_message: int
) -> None:  # type: ignore[no-untyped-def]
    """libs.bus consumers read the records topic as typed RecordAccepted events (batches event by
    event), standard headers, read_committed; one per message, each event id is its record id."""
    t = await make_topics(kafka.bootstrap_servers, "it-bus")
    values = settings_values(
        kafka.bootstrap_servers, t, tmp_path / "raw", consume=False, records_per_message=per_message
    )
    async with running(values) as (_, port), insecure_channel(f"127.0.0.1:{port}") as channel:
        await _ingest_and_read_typed(kafka, pb_grpc.IngestionServiceStub(channel), t, lone=per_message == 1)


async def _ingest_and_read_typed(kafka, stub: pb_grpc.IngestionServiceStub, t: Topics, *, lone: bool) -> None:  # type: ignore[no-untyped-def]
    examples = [e.record for e, _ in zip(LoanStream(seed=8), range(12), strict=False)]
    await stub.Ingest(
        pb.IngestRequest(use_case=UC, items=[_json_item(r) for r in examples], request_id="bus")
    )
    seen: list[Event] = []

    async def handle(event: Event) -> None:  # type: ignore[type-arg]
        seen.append(event)

    async with EventPublisher(kafka.bootstrap_servers, producer="test") as publisher:
        consumer = EventConsumer(
            kafka.bootstrap_servers,
            f"reader-{t.instance}",
            {t.records: [events_pb2.RecordAccepted]},
            handle,
            DeadLetters(publisher, t.dlq),
        )
        task = asyncio.create_task(consumer.run())
        try:
            async with asyncio.timeout(30):
                while len(seen) < 12:
                    await asyncio.sleep(0.05)
        finally:
            await consumer.stop()
            await task
    assert sorted(e.payload.record.record_id for e in seen) == sorted(f"grpc:bus:{i}" for i in range(12))
    assert {e.meta.event_type for e in seen} == {"aifactory.ingestion.v1.RecordAccepted"}
    assert {e.meta.use_case for e in seen} == {UC} and {e.meta.producer for e in seen} == {"ingestion"}
    same_id = [e.payload.record.record_id == e.meta.event_id for e in seen]
    assert all(same_id) if lone else not all(same_id)  # batched: <batch id>#<index>


async def test_second_use_case_needs_no_code(kafka, grpc_service) -> None:  # type: ignore[no-untyped-def]
    """image_segments (int entity key, label in the record) goes through the same service by its spec."""
    stub, t = grpc_service
    rows = [e.record for e, _ in zip(SegmentStream(seed=2, limit=5), range(5), strict=False)]
    reply = await stub.Ingest(
        pb.IngestRequest(
            use_case="image_segments",
            request_id="seg",
            items=[
                *(_json_item(r) for r in rows[:4]),
                _json_item({**rows[4], "surface": "lava", "camera_id": "x"}),
            ],
        )
    )
    assert [r.accepted for r in reply.results] == [True, True, True, True, False]
    assert {(v.field, v.code) for v in reply.results[4].violations} == {
        ("surface", "enum"),
        ("camera_id", "type"),
    }
    records = [
        e
        for r in await read_topic(kafka.bootstrap_servers, t.records)
        for e in accepted_in(r.value, r.headers)
    ]
    assert sorted(e.record.entity_id for e in records) == sorted(str(r["camera_id"]) for r in rows[:4])
    assert {e.schema_version for e in records} == {"image_segments@1"}
    assert all(e.record.fields["camera_id"].int64_value == int(e.record.entity_id) for e in records)
