"""Bytes → candidate record: every malformed shape is a record-level violation, never an exception."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf import struct_pb2

from aifactory.common.v1 import common_pb2
from services.ingestion import decode
from services.ingestion.violations import ENCODING, NOT_OBJECT, PARSE, TOO_LARGE, USE_CASE, Malformed


def code_of(payload: bytes, max_bytes: int = 1024) -> str:
    with pytest.raises(Malformed) as info:
        decode.decode_json(payload, max_bytes)
    assert info.value.violation.field == ""
    return info.value.violation.code


def test_json_object_decodes() -> None:
    assert decode.decode_json(b'{"a": 1, "b": "x"}').values == {"a": 1, "b": "x"}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"not json", PARSE),
        (b'{"a": 1', PARSE),
        (b"", PARSE),
        (b'{"a": NaN}', PARSE),
        (b'{"a": Infinity}', PARSE),
        (b"[" * 100_000 + b"]" * 100_000, TOO_LARGE),
        (b"\xff\xfe{}", ENCODING),
        (b'{"name": "caf\xe9"}', ENCODING),
        (b"[1, 2]", NOT_OBJECT),
        (b'"text"', NOT_OBJECT),
        (b"42", NOT_OBJECT),
        (b"null", NOT_OBJECT),
        (b"x" * 1025, TOO_LARGE),
    ],
)
def test_malformed_payloads(payload: bytes, code: str) -> None:
    assert code_of(payload) == code


def test_deep_nesting_is_a_parse_error_not_a_crash() -> None:
    assert code_of(b"[" * 50_000 + b"]" * 50_000, max_bytes=200_000) == PARSE


def test_utf16_json_is_not_accepted_as_utf8() -> None:
    # json.loads(bytes) would detect UTF-16 on its own; the contract is UTF-8.
    assert code_of('{"a": 1}'.encode("utf-16")) == ENCODING


def test_parse_message_does_not_echo_the_payload() -> None:
    with pytest.raises(Malformed) as info:
        decode.decode_json(b'{"applicant_name": "Ada Lovelace" oops}')
    assert "Ada" not in info.value.violation.message


def test_media_type() -> None:
    assert decode.media_type(b"application/x-protobuf") == decode.PROTOBUF
    assert decode.media_type("Application/Protobuf; proto=aifactory.common.v1.Record") == decode.PROTOBUF
    assert decode.media_type(None) == decode.JSON
    assert decode.media_type(b"application/json; charset=utf-8") == decode.JSON


def test_protobuf_record_fills_entity_and_event_time_from_its_envelope() -> None:
    at = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
    record = common_pb2.Record(
        use_case="loan_approval",
        entity_id="a00001",
        record_id="r-1",
        fields={
            "age": common_pb2.Value(int64_value=40),
            "salary": common_pb2.Value(double_value=1.5),
            "gender": common_pb2.Value(null_value=struct_pb2.NULL_VALUE),
        },
    )
    record.event_time.FromDatetime(at)
    candidate = decode.decode_protobuf(
        record.SerializeToString(), "loan_approval", "applicant_id", "event_time"
    )
    assert candidate.record_id == "r-1"
    assert candidate.values == {
        "age": 40,
        "salary": 1.5,
        "gender": None,
        "applicant_id": "a00001",
        "event_time": at,
    }


def test_protobuf_fields_win_over_the_envelope() -> None:
    record = common_pb2.Record(entity_id="env", fields={"applicant_id": common_pb2.Value(string_value="map")})
    candidate = decode.record_to_candidate(record, "loan_approval", "applicant_id", "event_time")
    assert candidate.values["applicant_id"] == "map"


def test_protobuf_garbage_and_wrong_use_case() -> None:
    with pytest.raises(Malformed) as info:
        decode.decode_protobuf(b"\xff\xff\xff\xff", "loan_approval", "applicant_id", "event_time")
    assert info.value.violation.code == PARSE
    other = common_pb2.Record(use_case="image_segments").SerializeToString()
    with pytest.raises(Malformed) as info:
        decode.decode_protobuf(other, "loan_approval", "applicant_id", "event_time")
    assert info.value.violation.code == USE_CASE
    with pytest.raises(Malformed) as info:
        decode.decode_protobuf(b"\x00" * 2000, "loan_approval", "applicant_id", "event_time", max_bytes=1000)
    assert info.value.violation.code == TOO_LARGE
