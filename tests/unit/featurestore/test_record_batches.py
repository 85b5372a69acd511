"""Records batched by ingestion (RecordAcceptedBatch): applied like lone records, judged one by one."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from aif.datagen import LoanStream
from aifactory.ingestion.v1 import events_pb2 as ingestion_events
from libs.bus import headers as h
from libs.usecase import load_default
from services.featurestore.batch import Incoming, RecordProcessor, partition_of
from services.featurestore.consumers import UNDECODABLE_KEY, chunks, split
from services.ingestion.publisher import Outgoing, accepted_message, batched
from tests.unit.featurestore.helpers import from_example, record_accepted

USECASES = load_default()
T0 = datetime(2026, 3, 1, tzinfo=UTC)
PARTITIONS = 3


def _accepted(n: int) -> list[ingestion_events.RecordAccepted]:
    out = []
    for ex, _ in zip(LoanStream(applicants=40, start=T0), range(n), strict=False):
        out.append(from_example("loan_approval", ex))
    return out


def _as_messages(events: list[ingestion_events.RecordAccepted], per_message: int) -> list[Incoming]:
    """What ingestion sends: per partition (by entity key), in order, packed ``per_message`` at most."""
    by_partition: dict[int, list[Outgoing]] = {}
    for event in events:
        message = accepted_message("records", event)
        assert message.key is not None
        by_partition.setdefault(partition_of(message.key, PARTITIONS), []).append(message)
    out = []
    for partition, messages in by_partition.items():
        for offset, m in enumerate(batched(messages, per_message)):
            out.append(Incoming("records", partition, offset, m.key, m.value, m.headers))
    return out


def test_batched_records_give_the_rows_and_states_of_lone_ones() -> None:
    events = _accepted(300)
    lone = _as_messages(events, 1)
    packed = _as_messages(events, 50)
    assert len(lone) == 300 and len(packed) < 20
    kinds = [dict(m.headers)[h.EVENT_TYPE] for m in packed]
    assert (
        kinds.count(b"aifactory.ingestion.v1.RecordAcceptedBatch") >= len(kinds) - PARTITIONS
    )  # a run of one goes alone
    proc = RecordProcessor(USECASES, require_key=True, partitions=PARTITIONS)
    want, got = proc.records(lone, lambda k: None), proc.records(packed, lambda k: None)
    assert not got.dead and not want.dead and len(got.rows) == 300
    assert sorted(got.rows, key=lambda r: r.record_id) == sorted(want.rows, key=lambda r: r.record_id)
    assert {k: s.to_json() for k, s in got.states.items()} == {k: s.to_json() for k, s in want.states.items()}
    # a replay of the same batches changes nothing
    again = proc.records(packed, {k: s.to_json() for k, s in got.states.items()}.get)
    assert again.rows == [] and again.duplicates == 300


def test_a_bad_record_in_a_batch_is_dead_lettered_alone_with_its_reason() -> None:
    good = _accepted(2)
    unknown = record_accepted("loan_approval", "e1", "r-no-time", T0, {"loan": 1.0})
    unknown.record.ClearField("event_time")
    keys = [f"loan_approval/{e.record.entity_id}".encode() for e in good]
    partition = partition_of(keys[0], PARTITIONS)
    # an entity placed in a partition its key does not hash to: its state lives elsewhere
    stranger = next(
        e
        for e in _accepted(60)
        if partition_of(f"loan_approval/{e.record.entity_id}".encode(), PARTITIONS) != partition
    )
    members = [good[0], unknown, stranger]
    [message] = batched([accepted_message("records", e) for e in members], 10)
    item = Incoming("records", partition, 42, message.key, message.value, message.headers)
    out = RecordProcessor(USECASES, require_key=True, partitions=PARTITIONS).records([item], lambda k: None)
    assert [r.record_id for r in out.rows] == [good[0].record.record_id]
    dead = {d.error: d for d in out.dead}
    assert set(dead) == {"event_time", "partition"}
    letter = dead["event_time"].item
    headers = dict(letter.headers)
    # dead-lettered as a RecordAccepted of its own, with an event id of its own
    assert headers[h.EVENT_TYPE] == b"aifactory.ingestion.v1.RecordAccepted"
    assert headers[h.EVENT_ID] == dict(message.headers)[h.EVENT_ID] + b"#1"
    assert ingestion_events.RecordAccepted.FromString(letter.value) == unknown
    assert (letter.topic, letter.partition, letter.offset) == ("records", partition, 42)
    assert stranger.record.entity_id in dead["partition"].reason


def test_an_undecodable_batch_is_dead_lettered_whole() -> None:
    [message] = batched([accepted_message("records", e) for e in _accepted(3)], 10)
    item = Incoming("records", 0, 1, None, b"\xff\x00garbage", message.headers)
    out = RecordProcessor(USECASES).records([item], lambda k: None)
    assert [(d.item, d.error) for d in out.dead] == [(item, "undecodable")] and not out.rows


def test_split_turns_a_batch_into_lone_keyed_records_and_forwards_the_rest() -> None:
    events = _accepted(5)
    [message] = batched([accepted_message("records", e) for e in events], 10)
    parts = split(Incoming("records", 0, 0, None, message.value, message.headers))
    assert [k for k, _, _ in parts] == [f"loan_approval/{e.record.entity_id}".encode() for e in events]
    assert [ingestion_events.RecordAccepted.FromString(v) for _, v, _ in parts] == events
    lone = accepted_message("records", events[0])
    assert split(Incoming("records", 0, 0, lone.key, lone.value, lone.headers)) == [
        (lone.key, lone.value, lone.headers)
    ]
    assert split(Incoming("records", 0, 0, None, b"\xff", message.headers))[0][0] == UNDECODABLE_KEY


def test_a_take_is_cut_at_message_boundaries_by_record_count() -> None:
    def event(n: int | None) -> SimpleNamespace:
        headers = [(h.BATCH_SIZE, str(n).encode())] if n is not None else []
        return SimpleNamespace(message=SimpleNamespace(headers=headers))

    events = [event(n) for n in (60, 30, None, 50, 100, None)]
    assert [len(c) for c in chunks(events, 100)] == [3, 1, 1, 1]  # 91 | 50 | 100 | 1
    assert [len(c) for c in chunks(events[:1], 10)] == [1]  # a message bigger than the cut goes alone
