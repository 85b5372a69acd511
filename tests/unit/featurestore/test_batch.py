"""One micro-batch without Kafka: features, labels, replays and dead letters with reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aif.datagen import LoanStream, SegmentStream
from aifactory.common.v1 import common_pb2
from libs.usecase import load_default
from services.featurestore.batch import Incoming, RecordProcessor
from tests.unit.featurestore.helpers import feedback, from_example, headers_for, record_accepted

USECASES = load_default()
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def incoming(event, offset: int = 0, headers: list | None = None, key: bytes | None = None) -> Incoming:  # type: ignore[no-untyped-def]
    if key is None and hasattr(event, "record"):
        key = f"{event.record.use_case}/{event.record.entity_id}".encode()
    return Incoming(
        "t", 0, offset, key, event.SerializeToString(), headers if headers is not None else headers_for(event)
    )


def loans(n: int, applicants: int = 5) -> list:  # type: ignore[type-arg]
    out = []
    for ex in LoanStream(applicants=applicants, start=T0):
        out.append(ex)
        if len(out) == n:
            return out
    return out


def test_records_become_rows_in_model_input_order_with_lineage() -> None:
    proc = RecordProcessor(USECASES)
    exs = loans(20)
    out = proc.records(
        [incoming(from_example("loan_approval", e), i) for i, e in enumerate(exs)], lambda k: None
    )
    assert not out.dead and len(out.rows) == 20 and not out.labels  # loan labels come as feedback
    row = out.rows[-1]
    assert row.record_id == exs[-1].record_id and row.dataset_version == "ds-1" and row.newest
    assert len(row.values) == len(USECASES["loan_approval"].model_inputs())
    assert row.attribute == exs[-1].record["gender"]
    counts = {}
    for e in exs:
        counts[e.entity_id] = counts.get(e.entity_id, 0) + 1
    assert set(out.states) == {f"loan_approval/{e}".encode() for e in counts}
    assert sum(len(s.times) for s in out.states.values()) == 20


def test_replays_are_skipped_within_a_batch_and_against_stored_state() -> None:
    proc = RecordProcessor(USECASES)
    exs = loans(6)
    items = [incoming(from_example("loan_approval", e), i) for i, e in enumerate(exs)]
    first = proc.records(items + items[:2], lambda k: None)
    assert len(first.rows) == 6 and first.duplicates == 2
    stored = {k: s.to_json() for k, s in first.states.items()}
    again = proc.records(items, stored.get)
    assert again.rows == [] and again.duplicates == 6 and again.states == {}


def test_label_in_the_record_is_stored_with_its_example() -> None:
    proc = RecordProcessor(USECASES)
    ex = next(iter(SegmentStream(start=T0)))
    out = proc.records([incoming(from_example("image_segments", ex))], lambda k: None)
    (label,) = out.labels
    assert label.label == ex.label and label.record_id == ex.record_id
    assert label.event_time_us == label.label_time_us == out.rows[0].event_time_us


def test_bad_messages_are_dead_lettered_with_their_reason_and_the_rest_applied() -> None:
    proc = RecordProcessor(USECASES)
    good = from_example("loan_approval", loans(1)[0])
    unknown = record_accepted("nope", "e1", "r1", T0, {})
    no_time = record_accepted("loan_approval", "e1", "r2", T0, {"loan": 1.0, "salary": 1.0})
    no_time.record.ClearField("event_time")
    not_a_number = record_accepted("loan_approval", "e1", "r3", T0, {"loan": "a lot", "salary": 1.0})
    bad_label = record_accepted("image_segments", "3", "r4", T0, {"surface": "lava"})
    items = [
        Incoming("t", 0, 1, b"k", b"\xff\x00garbage", headers_for(good)),
        incoming(unknown, 2),
        incoming(no_time, 3),
        incoming(not_a_number, 4),
        incoming(good, 5, headers=[("aif-event-type", b"aifactory.trainer.v1.TrainingRequested")]),
        incoming(bad_label, 6),
        incoming(good, 7),
        incoming(good, 8, key=b"loan_approval/someone-else"),
    ]
    out = proc.records(items, lambda k: None)
    reasons = {d.item.offset: (d.error, d.reason) for d in out.dead}
    assert reasons[1][0] == "undecodable"
    assert reasons[2] == ("use_case", "record.use_case: unknown use case 'nope'")
    assert reasons[3][0] == "event_time"
    assert reasons[4][0] == "feature" and "loan" in reasons[4][1]
    assert reasons[5][0] == "event_type"
    assert reasons[6][0] == "label" and "lava" in reasons[6][1]
    assert reasons[8][0] == "key" and "someone-else" in reasons[8][1]
    assert [r.record_id for r in out.rows] == [good.record.record_id]


def test_feedback_becomes_labels_joined_to_their_example() -> None:
    proc = RecordProcessor(USECASES)
    ex = loans(1)[0]
    fb = feedback("loan_approval", ex)
    seg = feedback("image_segments", next(iter(SegmentStream(start=T0))))
    missing_time = feedback("loan_approval", ex)
    missing_time.ClearField("event_time")
    wrong = feedback("loan_approval", ex)
    wrong.outcome.CopyFrom(common_pb2.Value(string_value="yes"))
    out = proc.feedback([incoming(fb, 1), incoming(seg, 2), incoming(missing_time, 3), incoming(wrong, 4)])
    (label,) = out.labels
    assert label.record_id == ex.record_id and label.label == ex.label
    assert label.label_time_us - label.event_time_us == int(timedelta(seconds=30).total_seconds() * 1e6)
    assert out.skipped == 1  # image_segments labels arrive in the record
    assert {d.item.offset: d.error for d in out.dead} == {3: "event_time", 4: "outcome"}


@pytest.mark.parametrize(
    "outcome",
    [
        common_pb2.Value(double_value=0.5),
        common_pb2.Value(int64_value=2),
        common_pb2.Value(bool_value=True),
        common_pb2.Value(),
    ],
    ids=["fraction", "not-a-class", "bool", "missing"],
)
def test_labels_must_be_declared_classes(outcome: common_pb2.Value) -> None:
    proc = RecordProcessor(USECASES)
    fb = feedback("loan_approval", loans(1)[0])
    fb.outcome.CopyFrom(outcome)
    out = proc.feedback([incoming(fb)])
    assert not out.labels and out.dead[0].error == "outcome"


def test_a_batch_skipped_by_the_decompression_cap_is_dead_lettered_with_the_cap() -> None:
    from libs.bus import compression

    proc = RecordProcessor(USECASES)
    reason = (
        "record batch aif.records/2 offsets 40-90 skipped, not buffered: gzip batch inflates past the cap"
    )
    header = [(compression.SKIPPED_HEADER, f"{compression.TOO_LARGE}\n{reason}".encode())]
    # As faust hands it over (no payload), and as the repartition forwards it (b"").
    skipped = [Incoming("t", 2, 90, None, None, header), Incoming("t", 2, 90, b"", b"", header)]
    good = incoming(from_example("loan_approval", loans(1)[0]), 91)
    out = proc.records([*skipped, good], lambda k: None)
    assert [(d.item.offset, d.error, d.reason) for d in out.dead] == [(90, compression.TOO_LARGE, reason)] * 2
    assert len(out.rows) == 1
    fb = proc.feedback(skipped[:1])
    assert [(d.error, d.reason) for d in fb.dead] == [(compression.TOO_LARGE, reason)]
