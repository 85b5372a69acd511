"""The audit log's hash chain: any change, removal or re-ordering is found and named."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.registry.audit import GENESIS, canonical_json, entry_hash, verify_chain
from services.registry.domain import Actor, AuditRecord


def chain(n: int) -> list[AuditRecord]:
    records, prev = [], GENESIS
    for i in range(1, n + 1):
        rec = AuditRecord(
            event_id=f"e{i}",
            sequence=i,
            time_us=1_700_000_000_000_000 + i,
            action="alias.promote",
            actor=Actor("alice", ("approver",)),
            use_case="uc",
            model_name="m",
            version=i,
            alias="champion",
            reason=f"step {i}",
            evidence_ids=(f"report-{i}",),
            details={"old_version": i - 1, "score": 0.5},
            prev_hash=prev,
            hash="",
        )
        rec = replace(rec, hash=entry_hash(prev, rec))
        records.append(rec)
        prev = rec.hash
    return records


def head(records: list[AuditRecord]) -> tuple[int, str] | None:
    return (records[-1].sequence, records[-1].hash) if records else None


def test_a_clean_chain_verifies() -> None:
    records = chain(5)
    report = verify_chain(records, head(records))
    assert report.valid and report.checked == 5 and report.head_hash == records[-1].hash
    assert verify_chain([], None).valid


@pytest.mark.parametrize(
    "change",
    [
        {"reason": "nothing to see"},
        {"actor": Actor("mallory", ("approver",))},
        {"version": 9},
        {"evidence_ids": ()},
        {"details": {"old_version": 2, "score": 0.51}},
        {"time_us": 1},
        {"action": "alias.set"},
        {"alias": "previous"},
    ],
)
def test_any_modified_field_is_found_at_its_entry(change: dict[str, object]) -> None:
    records = chain(5)
    records[2] = replace(records[2], **change)  # type: ignore[arg-type]
    report = verify_chain(records, head(records))
    assert not report.valid
    assert (report.first_invalid_sequence, report.first_invalid_event_id) == (3, "e3")
    assert report.checked == 2 and "modified" in report.message


def test_a_rehashed_entry_breaks_the_next_link() -> None:
    records = chain(4)
    forged = replace(records[1], reason="forged")
    records[1] = replace(forged, hash=entry_hash(forged.prev_hash, forged))
    report = verify_chain(records, head(chain(4)))
    assert (report.valid, report.first_invalid_sequence) == (False, 3)


def test_removed_and_reordered_entries_are_found() -> None:
    records = chain(5)
    missing = records[:2] + records[3:]
    assert verify_chain(missing, head(records)).first_invalid_sequence == 4
    swapped = [records[0], records[2], records[1], *records[3:]]
    assert verify_chain(swapped, head(records)).first_invalid_sequence == 3


def test_a_truncated_tail_is_found_through_the_head() -> None:
    records = chain(5)
    report = verify_chain(records[:4], head(records))
    assert not report.valid and report.first_invalid_sequence == 5 and "removed" in report.message


def test_canonical_json_is_independent_of_key_order_and_refuses_nan() -> None:
    assert (
        canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1}) == '{"a":[1,2],"b":1}'
    )
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
