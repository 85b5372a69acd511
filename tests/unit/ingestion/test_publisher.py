"""Packing accepted records into RecordAcceptedBatch messages: order, limits, what stays alone."""

from __future__ import annotations

from datetime import UTC, datetime

from aifactory.ingestion.v1 import events_pb2
from libs.bus import headers as h
from services.ingestion.publisher import Outgoing, accepted_in, accepted_message, batched
from tests.unit.featurestore.helpers import record_accepted

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _record(i: int, use_case: str = "loan_approval") -> Outgoing:
    event = record_accepted(use_case, f"e{i}", f"r{i}", T0, {"loan": float(i)})
    return accepted_message(
        "records", event, [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    )


def _dead(i: int) -> Outgoing:
    return Outgoing("dlq", b"x", None, [(h.EVENT_ID, f"d{i}".encode())])


def _ids(m: Outgoing) -> list[str]:
    return [e.record.record_id for e in accepted_in(m.value, m.headers)] if m.topic == "records" else ["dead"]


def test_runs_are_packed_in_order_and_cut_by_count_use_case_and_other_messages() -> None:
    messages = [
        *map(_record, range(5)),
        _dead(0),
        *map(_record, range(5, 8)),
        _record(8, "image_segments"),
        _record(9),
    ]
    out = batched(messages, 3)
    assert [_ids(m) for m in out] == [
        ["r0", "r1", "r2"],
        ["r3", "r4"],
        ["dead"],
        ["r5", "r6", "r7"],
        ["r8"],
        ["r9"],
    ]
    first = dict(out[0].headers)
    assert (
        first[h.EVENT_TYPE] == b"aifactory.ingestion.v1.RecordAcceptedBatch" and first[h.BATCH_SIZE] == b"3"
    )
    assert (
        first[h.USE_CASE] == b"loan_approval"
        and out[0].key is None
        and b"traceparent" in {k.encode() for k in first}
    )
    # the same records make the same event id; a lone record keeps its own form
    assert batched(messages, 3)[0].headers[0] == out[0].headers[0]
    assert out[4] == messages[9] and out[5] == messages[10]
    assert batched(messages, 1) == messages


def test_batches_stay_under_the_byte_limit() -> None:
    messages = [_record(i) for i in range(40)]
    limit = (len(messages[-1].value) + 2) * 10
    out = batched(messages, 1000, max_bytes=limit)
    assert len(out) >= 4 and all(len(m.value) <= limit for m in out)
    assert [e.record.record_id for m in out for e in accepted_in(m.value, m.headers)] == [
        f"r{i}" for i in range(40)
    ]
    assert events_pb2.RecordAcceptedBatch.FromString(out[0].value).records[0].record.record_id == "r0"
