"""One payload → one outcome: masking of personal data, ids, and isolation of failures."""

from __future__ import annotations

import json
from typing import Any

from aifactory.common.v1 import common_pb2
from libs.usecase import UseCase
from services.ingestion import convert, decode
from services.ingestion.pii import Privacy, pseudonym
from services.ingestion.records import UseCaseIngestor
from services.ingestion.violations import INTERNAL, NOT_OBJECT, TOO_LARGE
from tests.unit.ingestion.conftest import NOW

SALT = b"unit-salt"


def ingestor(uc: UseCase, max_bytes: int = 4096) -> UseCaseIngestor:
    return UseCaseIngestor(uc, salt=SALT, max_payload_bytes=max_bytes)


def test_accepted_json_is_masked_and_keeps_its_record_id(loan: UseCase, record: dict[str, Any]) -> None:
    payload = json.dumps({**record, "record_id": "loan-1"}).encode()
    outcome = ingestor(loan).from_bytes(payload, decode.JSON, "kafka:t:0:5", NOW)
    assert outcome.accepted and outcome.record_id == "loan-1"
    assert outcome.values["applicant_name"] == pseudonym(record["applicant_name"], SALT)
    assert record["applicant_name"] not in json.dumps(outcome.values, default=str)
    assert outcome.entity_id == record["applicant_id"] and outcome.nulls == ["approved"]


def test_default_id_without_a_producer_id(loan: UseCase, record: dict[str, Any]) -> None:
    outcome = ingestor(loan).from_bytes(json.dumps(record).encode(), decode.JSON, "kafka:t:0:5", NOW)
    assert outcome.record_id == "kafka:t:0:5"


def test_malformed_and_rejected_outcomes(loan: UseCase, record: dict[str, Any]) -> None:
    ing = ingestor(loan, max_bytes=300)
    too_big = ing.from_bytes(b"{" + b" " * 400 + b"}", decode.JSON, "d", NOW)
    assert [v.code for v in too_big.violations] == [TOO_LARGE] and too_big.nulls is None
    array = ing.from_bytes(b"[]", decode.JSON, "d", NOW)
    assert [v.code for v in array.violations] == [NOT_OBJECT]
    bad = ingestor(loan).from_bytes(
        json.dumps({**record, "age": 5, "record_id": "r7"}).encode(), decode.JSON, "d", NOW
    )
    assert not bad.accepted and bad.record_id == "r7" and bad.values == {}


def test_protobuf_record_goes_through_the_same_contract(loan: UseCase, record: dict[str, Any]) -> None:
    fields = {k: convert.value(v) for k, v in record.items() if k not in ("applicant_id", "event_time")}
    msg = common_pb2.Record(
        use_case="loan_approval", entity_id=record["applicant_id"], record_id="pb-1", fields=fields
    )
    msg.event_time.FromJsonString(record["event_time"].replace("+00:00", "Z"))
    outcome = ingestor(loan).from_bytes(msg.SerializeToString(), decode.PROTOBUF, "d", NOW)
    assert outcome.accepted, outcome.violations
    assert outcome.record_id == "pb-1" and outcome.entity_id == record["applicant_id"]
    assert ingestor(loan).from_record(msg, "d", NOW).values == outcome.values


def test_a_bug_costs_one_record_not_the_consumer(loan: UseCase, record: dict[str, Any], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ing = ingestor(loan)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError

    monkeypatch.setattr(ing.contract, "check", boom)
    outcome = ing.from_bytes(json.dumps(record).encode(), decode.JSON, "d", NOW)
    assert [v.code for v in outcome.violations] == [INTERNAL] and outcome.record_id == "d"


def test_privacy_hash_and_drop(loan: UseCase) -> None:
    spec = loan.model_copy(
        update={"fields": {**loan.fields, "gender": loan.fields["gender"].model_copy(update={"pii": "drop"})}}
    )
    privacy = Privacy(spec, SALT)
    masked = privacy.mask({"applicant_name": "Ada", "gender": "f", "age": 30})
    assert masked == {"applicant_name": pseudonym("Ada", SALT), "age": 30}
    assert pseudonym("Ada", SALT) != pseudonym("Ada", b"other") and len(pseudonym("Ada", SALT)) == 64
    assert (
        privacy.kept_type("gender", "string") is None
        and privacy.kept_type("applicant_name", "string") == "string"
    )
    assert privacy.mask({"applicant_name": None}) == {"applicant_name": None}


def test_accepted_event_carries_typed_values(loan: UseCase, record: dict[str, Any]) -> None:
    outcome = ingestor(loan).from_bytes(
        json.dumps({**record, "record_id": "x1"}).encode(), decode.JSON, "d", NOW
    )
    ref = convert.dataset_ref("loan_approval", "v1", "file:///d")
    event = convert.accepted(
        "loan_approval",
        outcome,
        schema_version="loan_approval@1",
        dataset=ref,
        ingested_at=convert.timestamp(NOW),
    )
    f = event.record.fields
    assert f["age"].int64_value == record["age"] and f["salary"].double_value == record["salary"]
    assert f["approved"].WhichOneof("kind") == "null_value"
    assert f["event_time"].string_value == record["event_time"]
    assert event.record.entity_id == record["applicant_id"] and event.record.record_id == "x1"
    assert event.schema_version == "loan_approval@1" and event.dataset.version == "v1"


def test_dead_letter_keeps_a_bounded_original(loan: UseCase) -> None:
    huge = b"{" + b" " * 10_000 + b"}"
    outcome = ingestor(loan).from_bytes(huge, decode.JSON, "kafka:t:1:2", NOW)
    event = convert.rejected(
        "loan_approval",
        outcome,
        original=huge,
        content_type=decode.JSON,
        schema_version="loan_approval@1",
        rejected_at=convert.timestamp(NOW),
        source=("t", 1, 2),
        max_original=1000,
    )
    assert event.original == huge[:1000] and event.original_truncated and event.original_size == len(huge)
    assert (event.source_topic, event.source_partition, event.source_offset) == ("t", 1, 2)
    assert [(v.field, v.code) for v in event.violations] == [("", "too_large")]
    small = convert.rejected(
        "loan_approval",
        outcome,
        original=b"[]",
        content_type=decode.JSON,
        schema_version="loan_approval@1",
        rejected_at=convert.timestamp(NOW),
    )
    assert small.original == b"[]" and not small.original_truncated and small.original_size == 2
