"""The data contract: every violation code, the coercion rules, and every reason at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from libs.usecase import UseCase, parse_usecase
from services.ingestion.validate import Contract
from services.ingestion.violations import (
    ENUM,
    FUTURE,
    MAX_LENGTH,
    RANGE,
    REQUIRED,
    TYPE,
    UNKNOWN_FIELD,
)
from tests.unit.ingestion.conftest import NOW


def codes(contract: Contract, values: dict[str, Any]) -> set[tuple[str, str]]:
    return {(v.field, v.code) for v in contract.check(values, NOW).violations}


def test_valid_record_is_accepted_with_typed_values(loan: UseCase, record: dict[str, Any]) -> None:
    checked = Contract(loan).check(record, NOW)
    assert checked.accepted, checked.violations
    assert checked.entity_id == record["applicant_id"]
    assert checked.event_time == datetime.fromisoformat(record["event_time"])
    assert isinstance(checked.values["age"], int) and isinstance(checked.values["salary"], float)
    assert checked.values["approved"] is None and "approved" in checked.nulls


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"age": None}, {("age", REQUIRED)}),
        ({"age": "forty"}, {("age", TYPE)}),
        ({"age": 150}, {("age", RANGE)}),
        ({"age": 3}, {("age", RANGE)}),
        ({"elevel": 7}, {("elevel", ENUM)}),
        ({"gender": "q"}, {("gender", ENUM)}),
        ({"applicant_id": "a" * 65}, {("applicant_id", MAX_LENGTH)}),
        ({"applicant_id": ""}, {("applicant_id", REQUIRED)}),
        ({"applicant_id": "   "}, {("applicant_id", REQUIRED)}),
        ({"applicant_id": 17}, {("applicant_id", TYPE)}),
        ({"colour": "red"}, {("colour", UNKNOWN_FIELD)}),
        ({"event_time": (NOW + timedelta(minutes=6)).isoformat()}, {("event_time", FUTURE)}),
        ({"event_time": "yesterday"}, {("event_time", TYPE)}),
        ({"record_id": ""}, {("record_id", TYPE)}),
        ({"record_id": ["x"]}, {("record_id", TYPE)}),
        ({"salary": {"amount": 1}}, {("salary", TYPE)}),
        ({"salary": [1.0]}, {("salary", TYPE)}),
    ],
)
def test_each_violation_code(
    loan: UseCase, record: dict[str, Any], change: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    assert codes(Contract(loan), {**record, **change}) == expected


def test_missing_key_is_the_same_as_null(loan: UseCase, record: dict[str, Any]) -> None:
    del record["salary"]
    assert codes(Contract(loan), record) == {("salary", REQUIRED)}


def test_every_reason_is_returned_at_once(loan: UseCase, record: dict[str, Any]) -> None:
    bad = {
        **record,
        "age": 200,
        "elevel": "x",
        "zipcode": 42,
        "colour": 1,
        "nickname": 2,
        "event_time": (NOW + timedelta(days=1)).isoformat(),
    }
    del bad["salary"]
    assert codes(Contract(loan), bad) == {
        ("age", RANGE),
        ("elevel", TYPE),
        ("zipcode", ENUM),
        ("colour", UNKNOWN_FIELD),
        ("nickname", UNKNOWN_FIELD),
        ("event_time", FUTURE),
        ("salary", REQUIRED),
    }


def test_skew_within_tolerance_is_accepted(loan: UseCase, record: dict[str, Any]) -> None:
    record["event_time"] = (NOW + timedelta(minutes=4)).isoformat()
    assert Contract(loan).check(record, NOW).accepted


@pytest.mark.parametrize(("raw", "typed"), [(40, 40), (40.0, 40), ("40", 40), ("+40", 40)])
def test_int_coercions(loan: UseCase, record: dict[str, Any], raw: Any, typed: int) -> None:
    checked = Contract(loan).check({**record, "age": raw}, NOW)
    assert checked.accepted and checked.values["age"] == typed and type(checked.values["age"]) is int


@pytest.mark.parametrize("raw", [40.5, "40.0", " 40", "4e1", True, "", 2**63])
def test_int_refusals(loan: UseCase, record: dict[str, Any], raw: Any) -> None:
    assert codes(Contract(loan), {**record, "age": raw}) == {("age", TYPE)}


@pytest.mark.parametrize(
    ("raw", "typed"), [(1000, 1000.0), (1000.5, 1000.5), ("1000.5", 1000.5), ("1e3", 1000.0), (".5", 0.5)]
)
def test_float_coercions(loan: UseCase, record: dict[str, Any], raw: Any, typed: float) -> None:
    checked = Contract(loan).check({**record, "salary": raw}, NOW)
    assert checked.accepted and checked.values["salary"] == typed and type(checked.values["salary"]) is float


@pytest.mark.parametrize("raw", [False, "nan", "inf", "1_000", float("inf"), float("nan"), "12abc"])
def test_float_refusals(loan: UseCase, record: dict[str, Any], raw: Any) -> None:
    assert codes(Contract(loan), {**record, "salary": raw}) == {("salary", TYPE)}


@pytest.mark.parametrize(
    ("raw", "typed"),
    [
        ("2026-01-01T09:30:00Z", datetime(2026, 1, 1, 9, 30, tzinfo=UTC)),
        ("2026-01-01T11:30:00+02:00", datetime(2026, 1, 1, 9, 30, tzinfo=UTC)),
        ("2026-01-01T09:30:00", datetime(2026, 1, 1, 9, 30, tzinfo=UTC)),  # no offset: UTC
        (1767259800000, datetime(2026, 1, 1, 9, 30, tzinfo=UTC)),  # epoch milliseconds
        (1767259800000.0, datetime(2026, 1, 1, 9, 30, tzinfo=UTC)),
        (
            datetime(2026, 1, 1, 4, 30, tzinfo=timezone(timedelta(hours=-5))),
            datetime(2026, 1, 1, 9, 30, tzinfo=UTC),
        ),
    ],
)
def test_timestamp_coercions(loan: UseCase, record: dict[str, Any], raw: Any, typed: datetime) -> None:
    checked = Contract(loan).check({**record, "event_time": raw}, NOW)
    assert checked.accepted, checked.violations
    assert checked.event_time == typed and checked.event_time.tzinfo == UTC


@pytest.mark.parametrize("raw", [True, "1767259800000", 10**20, "2026-13-01T00:00:00Z"])
def test_timestamp_refusals(loan: UseCase, record: dict[str, Any], raw: Any) -> None:
    assert codes(Contract(loan), {**record, "event_time": raw}) == {("event_time", TYPE)}


BOOL_SPEC = """
name: flags
version: 2
owners: [{name: t, email: t@example.com}]
task: binary
entity: {field: id}
event_time: {field: at}
fields:
  id: {type: int, required: true, min: 0}
  at: {type: timestamp, required: true}
  flag: {type: bool}
  score: {type: float}
  record_id: {type: string}
  secret: {type: string, pii: hash, max_length: 5, enum: [alpha, beta]}
label: {field: flag, arrives: record, classes: [false, true]}
features: {row: [{name: score, source: score}]}
evaluation: {metric: auc, floor: 0.5}
"""


@pytest.fixture
def flags() -> Contract:
    return Contract(parse_usecase(BOOL_SPEC))


@pytest.mark.parametrize(
    ("raw", "typed"),
    [(True, True), (0, False), (1, True), ("TRUE", True), ("false", False), ("1", True), ("0", False)],
)
def test_bool_coercions(flags: Contract, raw: Any, typed: bool) -> None:
    checked = flags.check({"id": 1, "at": "2026-01-01T00:00:00Z", "flag": raw}, NOW)
    assert checked.accepted and checked.values["flag"] is typed


@pytest.mark.parametrize("raw", [2, 1.0, "yes", "t", None])
def test_bool_refusals(flags: Contract, raw: Any) -> None:
    checked = flags.check({"id": 1, "at": "2026-01-01T00:00:00Z", "flag": raw}, NOW)
    assert [(v.field, v.code) for v in checked.violations] == ([("flag", TYPE)] if raw is not None else [])


def test_int_entity_key_is_stringified(flags: Contract) -> None:
    checked = flags.check({"id": "42", "at": "2026-01-01T00:00:00Z"}, NOW)
    assert checked.accepted and checked.entity_id == "42" and checked.values["id"] == 42


def test_declared_record_id_field_is_a_field_and_the_id(flags: Contract) -> None:
    checked = flags.check({"id": 1, "at": "2026-01-01T00:00:00Z", "record_id": "r-9"}, NOW)
    assert checked.accepted and checked.record_id == "r-9" and checked.values["record_id"] == "r-9"


def test_reserved_record_id_is_not_a_field(loan: UseCase, record: dict[str, Any]) -> None:
    checked = Contract(loan).check({**record, "record_id": 123}, NOW)
    assert checked.accepted and checked.record_id == "123" and "record_id" not in checked.values
    assert Contract(loan).check(record, NOW, record_id="from-envelope").record_id == "from-envelope"


def test_messages_never_echo_personal_data(flags: Contract) -> None:
    checked = flags.check({"id": 1, "at": "2026-01-01T00:00:00Z", "secret": "gamma-ray"}, NOW)
    assert {(v.field, v.code) for v in checked.violations} == {("secret", ENUM), ("secret", MAX_LENGTH)}
    assert all("gamma" not in v.message for v in checked.violations)
    plain = flags.check({"id": -5, "at": "2026-01-01T00:00:00Z"}, NOW)
    assert [v.message for v in plain.violations] == ["id -5 is below the minimum 0"]


def test_long_unknown_keys_are_truncated(loan: UseCase, record: dict[str, Any]) -> None:
    (violation,) = Contract(loan).check({**record, "k" * 10_000: 1}, NOW).violations
    assert violation.code == UNKNOWN_FIELD and len(violation.field) < 200 and len(violation.message) < 200
