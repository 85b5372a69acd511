"""The gRPC data plane with a fake publisher: ids, typed errors naming the field, failures as UNAVAILABLE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from aif.datagen import to_json
from aifactory.ingestion.v1 import events_pb2
from aifactory.ingestion.v1 import ingestion_service_pb2 as pb
from libs.errors import InvalidArgument, NotFound, Unavailable
from libs.usecase import UseCase
from services.ingestion.push import PushIngest
from services.ingestion.quality import QualityTracker
from services.ingestion.records import UseCaseIngestor
from services.ingestion.store import RawDataset


class FakePublisher:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[Any] = []

    async def commit(self, messages: list[Any], offsets: Any = None, group_id: str = "") -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.extend(messages)


def push(tmp_path: Path, loan: UseCase, publisher: FakePublisher, max_items: int = 10) -> PushIngest:
    ing = UseCaseIngestor(loan, salt=b"s", max_payload_bytes=4096)
    return PushIngest(
        {"loan_approval": ing},
        RawDataset(tmp_path, {"loan_approval": loan}, {"loan_approval": ing.privacy}),
        QualityTracker({"loan_approval": loan}, MeterProvider().get_meter("t")),
        publisher,  # type: ignore[arg-type]
        records_topic="recs",
        dead_letter_topic="dlq",
        max_items=max_items,
    )


async def test_ids_outcomes_and_messages(tmp_path: Path, loan: UseCase, record: dict[str, Any]) -> None:
    publisher = FakePublisher()
    items = [pb.IngestItem(json=to_json(record).decode()), pb.IngestItem(json="{}")]
    result = await push(tmp_path, loan, publisher).ingest(
        "loan_approval", items, request_id="q", start_index=5, subject="alice"
    )
    assert [(o.record_id, o.accepted) for o in result.outcomes] == [("grpc:q:5", True), ("grpc:q:6", False)]
    assert [m.topic for m in publisher.sent] == ["recs", "dlq"]
    assert (
        events_pb2.RecordAccepted.FromString(publisher.sent[0].value).dataset.version
        == result.dataset.version
    )  # type: ignore[union-attr]
    table = push(tmp_path, loan, FakePublisher())._dataset.read("loan_approval")  # who pushed each row
    assert table.column("_source").to_pylist() == ["grpc:alice"]


async def test_typed_errors(tmp_path: Path, loan: UseCase) -> None:
    p = push(tmp_path, loan, FakePublisher(), max_items=1)
    with pytest.raises(NotFound):
        await p.ingest("nope", [pb.IngestItem(json="{}")], request_id="r")
    with pytest.raises(InvalidArgument) as info:
        await p.ingest("", [pb.IngestItem(json="{}")], request_id="r")
    assert info.value.field == "use_case"
    with pytest.raises(InvalidArgument) as info:
        await p.ingest("loan_approval", [], request_id="r")
    assert info.value.field == "items"
    with pytest.raises(InvalidArgument) as info:
        await p.ingest("loan_approval", [pb.IngestItem(json="{}")] * 2, request_id="r")
    assert info.value.field == "items"


async def test_publish_failure_is_unavailable(tmp_path: Path, loan: UseCase) -> None:
    with pytest.raises(Unavailable, match="same request_id"):
        await push(tmp_path, loan, FakePublisher(fail=True)).ingest(
            "loan_approval", [pb.IngestItem(json="[]")], request_id="r"
        )
