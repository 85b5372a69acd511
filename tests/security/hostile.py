"""Hostile Kafka messages for the malformed-topic suite, and reading back what became of them.

A *battery* for one topic is a list of bad messages (each unique, so its dead letter can
be found by its bytes or its offset) followed by one valid event. For topics of typed
events (``libs.bus``): undecodable payloads of several kinds, events of the wrong type,
missing and broken headers, a payload just under the broker's size limit, and a flood.
For raw topics (ingestion): payloads that are not JSON, not objects, of the wrong types,
too large, protobuf with out-of-range timestamps, and a flood.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from aifactory.common.v1 import common_pb2
from libs.bus import headers as h
from libs.bus.headers import EventMeta
from libs.bus.types import event_type_of, schema_version_of
from tests.security.fuzzing import tag, varint

# The broker's message.max.bytes (Kafka's default, which aif.infra keeps).
BROKER_MAX = 1_048_588
# A value this size fits in one record batch under BROKER_MAX, headers included.
JUST_UNDER = 1_000_000
UNKNOWN_FIELD = 1000


@dataclass
class Msg:
    kind: str
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    key: bytes | None = None
    offset: int = -1


@dataclass
class Battery:
    topic: str
    bad: list[Msg]
    valid: Msg
    too_large: Msg | None = None  # past the broker's limit: must be refused when produced
    # Sent before the valid event, neither required to be dead-lettered nor to be applied.
    tolerated: list[Msg] = field(default_factory=list)

    @property
    def tried(self) -> int:
        return len(self.bad) + len(self.tolerated) + 1 + (self.too_large is not None)


def with_marker(payload: bytes, marker: str) -> bytes:
    """``payload`` plus an unknown field: still the same valid message, now unique."""
    data = marker.encode()
    return payload + tag(UNKNOWN_FIELD, 2) + varint(len(data)) + data


def _first_string_field(cls: type[Message]) -> int:
    return next((f.number for f in cls.DESCRIPTOR.fields if f.type == FieldDescriptor.TYPE_STRING), 1)


def typed_battery(
    topic: str,
    accepted: type[Message],
    valid: Message,
    wrong: Message,
    *,
    use_case: str,
    flood: int,
    empty_rejected: bool = True,
    strict_headers: bool = True,
    seed: int = 7,
) -> Battery:
    """Bad messages for a topic of ``accepted`` events, then ``valid`` (properly headed).

    ``empty_rejected``: an empty event of the right type must be dead-lettered (false where
    the service ignores it by design). ``strict_headers``: a valid payload with missing or
    broken aif-* headers must be dead-lettered (false for consumers that read the payload
    whatever the headers say; those messages are then only sent, and must not stop it)."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    counter = itertools.count()
    event_type = event_type_of(accepted)

    def marker() -> str:
        return f"hostile-{run}-{next(counter)}"

    def headers(event_type: str = event_type, **replace: bytes | None) -> list[tuple[str, bytes]]:
        meta = EventMeta.new(event_type, schema_version_of(accepted), use_case, "hostile", event_id=marker())
        out = dict(meta.to_headers())
        for name, value in replace.items():
            key = name.replace("_", "-")
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
        return list(out.items())

    def garbage(size: int = 64) -> bytes:
        # Field number 0 never parses: whatever follows, the payload is undecodable.
        return b"\x00" + rng.randbytes(size) + marker().encode()

    string_field = _first_string_field(accepted)
    sample = valid.SerializeToString()
    bad = [
        Msg("not protobuf", garbage(), headers()),
        Msg(
            "invalid UTF-8 in a string",
            tag(string_field, 2) + varint(4) + b"\xff\xfe\xfd\xfc" + marker().encode(),
            headers(),
        ),
        Msg("length past the end", tag(string_field, 2) + varint(10_000) + marker().encode(), headers()),
        Msg("groups nested 5000 deep", tag(UNKNOWN_FIELD, 3) * 5000 + marker().encode(), headers()),
        Msg("truncated", with_marker(sample, marker() * 3)[:-10], headers()),
        Msg(
            "wrong event type",
            with_marker(wrong.SerializeToString(), marker()),
            headers(event_type_of(wrong)),
        ),
        Msg("unknown event type", with_marker(sample, marker()), headers("aifactory.nope.v1.Nope")),
        Msg("event type not UTF-8", with_marker(sample, marker()), headers(aif_event_type=b"\xff\xfe\xfd")),
        Msg("just under the broker's limit", garbage(JUST_UNDER), headers()),
    ]
    lax = [
        Msg("no headers", with_marker(sample, marker()), []),
        Msg("no event type header", with_marker(sample, marker()), headers(aif_event_type=None)),
        Msg("no event id header", with_marker(sample, marker()), headers(aif_event_id=None)),
        Msg("produced-at not a number", with_marker(sample, marker()), headers(aif_produced_at_ms=b"soon")),
    ]
    if strict_headers:
        bad += lax
    if empty_rejected:
        bad.append(Msg("empty event", with_marker(accepted().SerializeToString(), marker()), headers()))
    bad += [Msg("flood", garbage(rng.randrange(1, 200)), headers()) for _ in range(flood)]
    too_large = Msg("past the broker's limit", garbage(2 * BROKER_MAX), headers())
    battery = Battery(topic, bad, Msg("valid", valid.SerializeToString(), headers()), too_large)
    if not strict_headers:
        battery.tolerated = lax
    return battery


def raw_battery(topic: str, valid: dict[str, Any], *, flood: int, max_payload: int, seed: int = 7) -> Battery:
    """Bad payloads for a use case's raw topic (outside producers: no aif-* headers)."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    counter = itertools.count()

    def rid() -> str:
        return f"hostile-{run}-{next(counter)}"

    def record(**changes: Any) -> bytes:
        return json.dumps({**valid, "record_id": rid(), **changes}, default=str).encode()

    proto = common_pb2.Record(use_case="", entity_id="hostile", record_id=rid())
    proto.event_time.seconds, proto.event_time.nanos = 2**62, -1
    protobuf = [(h.CONTENT_TYPE, b"application/x-protobuf")]
    field_names = [k for k in valid if k not in ("record_id",)]
    bad = [
        Msg("not JSON", b"{not json " + rid().encode()),
        Msg("JSON array", json.dumps([rid(), 1]).encode()),
        Msg("JSON string", json.dumps(rid()).encode()),
        Msg("wrong types", record(**{name: {"nested": [1, 2]} for name in field_names[:4]})),
        Msg("missing fields", json.dumps({"record_id": rid()}).encode()),
        Msg("NaN and Infinity", record().replace(b"{", b'{"x": NaN, "y": -Infinity, ', 1)),
        Msg("nested 100000 deep", b"[" * 100_000 + rid().encode()),
        Msg("invalid UTF-8", b'{"record_id": "' + rid().encode() + b'\xff\xfe"}'),
        Msg("unknown fields", record(**{f"x{i}": i for i in range(200)})),
        Msg("over the payload cap", record(padding="x" * (max_payload + 1))),
        Msg("just under the broker's limit", record(padding="x" * (JUST_UNDER - 2000))),
        Msg("protobuf garbage", b"\x00" + rng.randbytes(64) + rid().encode(), protobuf),
        Msg("protobuf with a timestamp out of range", proto.SerializeToString(), protobuf),
        Msg("content type not UTF-8", b"\xff" + rid().encode(), [(h.CONTENT_TYPE, b"\xff\xfe")]),
        Msg("empty", b"", [(h.EVENT_ID, rid().encode())]),
    ]
    bad += [
        Msg("flood", rng.choice([b"\x00", b"{", b"[1,", b"\xff", b"null"]) + rid().encode())
        for _ in range(flood)
    ]
    good = json.dumps({**valid, "record_id": rid()}, default=str).encode()
    return Battery(
        topic, bad, Msg("valid", good), Msg("past the broker's limit", record(padding="x" * 2 * BROKER_MAX))
    )


# -- Kafka plumbing -----------------------------------------------------------------------------


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, batteries: Iterable[Battery]) -> None:
    """Sends every battery (bad messages, then the valid one); records offsets. The message
    past the broker's limit must be refused by the broker, never appended."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=4 * BROKER_MAX, linger_ms=5, acks="all"
    )
    await producer.start()
    try:
        for battery in batteries:
            if battery.too_large is not None:
                try:
                    await producer.send_and_wait(
                        battery.topic, battery.too_large.value, headers=battery.too_large.headers or None
                    )
                except KafkaError as exc:
                    assert "TooLarge" in type(exc).__name__, exc
                else:
                    raise AssertionError(f"the broker appended a {len(battery.too_large.value)}-byte message")
            messages = [*battery.bad, *battery.tolerated, battery.valid]
            futures = [
                await producer.send(battery.topic, m.value, key=m.key, headers=m.headers or None)
                for m in messages
            ]
            for message, meta in zip(messages, await asyncio.gather(*futures), strict=True):
                message.offset = meta.offset
    finally:
        await producer.stop()


@dataclass
class Letter:
    value: bytes
    headers: dict[str, bytes]


async def read_until(
    bootstrap: str, topic: str, done: Callable[[list[Letter]], bool], timeout: float
) -> list[Letter]:
    """Records of ``topic`` from its start until ``done(records)`` (or the timeout: what was read)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * BROKER_MAX,
    )
    await consumer.start()
    out: list[Letter] = []
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - a topic created just now
            partitions = consumer.partitions_for_topic(topic) or {0}
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        deadline = asyncio.get_running_loop().time() + timeout
        while not done(out) and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out += [Letter(r.value or b"", dict(r.headers or ())) for r in records]
    finally:
        await consumer.stop()
    return out


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """The offset ``group`` has committed on partition 0 of ``topic`` (-1: none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    meta = offsets.get(TopicPartition(topic, 0))
    return -1 if meta is None else meta.offset


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.25)


def check_letters(battery: Battery, letters: list[Letter], *, reason_header: str = h.DLQ_REASON) -> None:
    """Every bad message of ``battery`` has a dead letter with a reason; the valid one has none."""
    by_value: dict[bytes, Letter] = {}
    for letter in letters:
        by_value.setdefault(letter.value, letter)
    missing = [m.kind for m in battery.bad if m.value not in by_value]
    assert not missing, (
        f"{battery.topic}: {len(missing)} bad messages not dead-lettered: {sorted(set(missing))}"
    )
    silent = [m.kind for m in battery.bad if not by_value[m.value].headers.get(reason_header)]
    assert not silent, f"{battery.topic}: dead letters without a reason: {sorted(set(silent))}"
    assert battery.valid.value not in by_value, f"{battery.topic}: the valid event was dead-lettered: " + (
        by_value[battery.valid.value].headers.get(reason_header, b"").decode(errors="replace")
    )
