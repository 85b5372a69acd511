"""The versioned raw dataset: content-hash versions, reconciliation after a crash, reads."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from libs.errors import NotFound
from libs.usecase import UseCase
from services.ingestion import decode
from services.ingestion.records import Outcome, UseCaseIngestor
from services.ingestion.store import MANIFEST, RawDataset, kafka_file_name, version_of
from tests.unit.ingestion.conftest import NOW

SALT = b"unit-salt"


@pytest.fixture
def ing(loan: UseCase) -> UseCaseIngestor:
    return UseCaseIngestor(loan, salt=SALT, max_payload_bytes=4096)


def store(root: Path, loan: UseCase, ing: UseCaseIngestor) -> RawDataset:
    return RawDataset(root, {"loan_approval": loan}, {"loan_approval": ing.privacy})


def accepted(
    ing: UseCaseIngestor, record: dict[str, Any], n: int, start: int = 0, day_shift: int = 0
) -> list[Outcome]:
    out = []
    for i in range(start, start + n):
        at = datetime.fromisoformat(record["event_time"]) + timedelta(days=day_shift, seconds=i)
        payload = json.dumps({**record, "event_time": at.isoformat(), "record_id": f"r{i}"}).encode()
        o = ing.from_bytes(payload, decode.JSON, "d", NOW)
        assert o.accepted
        out.append(o)
    return out


def test_stage_publish_version_and_read(
    tmp_path: Path, loan: UseCase, ing: UseCaseIngestor, record: dict[str, Any]
) -> None:
    ds = store(tmp_path, loan, ing)
    with pytest.raises(NotFound):
        ds.get("loan_approval")
    rows = accepted(ing, record, 5) + accepted(ing, record, 2, start=5, day_shift=1)
    files = ds.stage(
        "loan_approval", rows, [f"t/0/{i}" for i in range(7)], NOW, kafka_file_name("t", 0, 0, 6)
    )
    assert sorted(f.rows for f in files) == [2, 5] and len({f.path.split("/")[0] for f in files}) == 2
    expected = ds.next_version("loan_approval", files)
    assert ds.current("loan_approval") is None  # staged is not published
    v1 = ds.publish("loan_approval", files)
    assert v1 is not None and v1.version == expected == version_of(f.sha256 for f in files)
    assert (v1.rows, v1.file_count, v1.parent) == (7, 2, "")
    assert v1.min_event_time == rows[0].event_time and v1.max_event_time == rows[-1].event_time
    table = ds.read("loan_approval")
    assert table.column("_record_id").to_pylist() == [f"r{i}" for i in range(7)]
    # personal data is stored hashed, never in clear
    assert record["applicant_name"] not in table.column("applicant_name").to_pylist()
    assert set(table.column_names) >= {"_entity_id", "_event_time", "_ingested_at", "_source", "age"}
    assert pq.read_schema(tmp_path / "loan_approval" / files[0].path).field("age").type == "int64"

    more = ds.stage("loan_approval", accepted(ing, record, 3, start=7), ["g"] * 3, NOW)
    v2 = ds.publish("loan_approval", more)
    assert v2 is not None and v2.parent == v1.version and v2.rows == 10 and v2.file_count == 3
    # versions survive a restart, and an old one can still be read
    again = store(tmp_path, loan, ing)
    assert again.get("loan_approval").version == v2.version
    assert again.get("loan_approval", v1.version).rows == 7
    assert again.read("loan_approval", v1.version).num_rows == 7
    with pytest.raises(NotFound):
        again.get("loan_approval", "nope")


def test_read_keeps_one_row_per_record_id(
    tmp_path: Path, loan: UseCase, ing: UseCaseIngestor, record: dict[str, Any]
) -> None:
    ds = store(tmp_path, loan, ing)
    rows = accepted(ing, record, 3)
    ds.publish("loan_approval", ds.stage("loan_approval", rows, ["a"] * 3, NOW))
    ds.publish("loan_approval", ds.stage("loan_approval", rows, ["b"] * 3, NOW + timedelta(seconds=1)))
    assert ds.current("loan_approval").rows == 6  # type: ignore[union-attr]
    table = ds.read("loan_approval")
    assert table.num_rows == 3 and table.column("_source").to_pylist() == ["a"] * 3


def test_reconcile_publishes_committed_and_deletes_uncommitted(
    tmp_path: Path, loan: UseCase, ing: UseCaseIngestor, record: dict[str, Any]
) -> None:
    ds = store(tmp_path, loan, ing)
    committed = ds.stage(
        "loan_approval", accepted(ing, record, 4), ["s"] * 4, NOW, kafka_file_name("aif.x-1.raw", 2, 0, 3)
    )
    expected = ds.next_version("loan_approval", committed)
    pending = ds.stage(
        "loan_approval",
        accepted(ing, record, 4, start=4),
        ["s"] * 4,
        NOW,
        kafka_file_name("aif.x-1.raw", 2, 4, 7),
    )
    other = ds.stage(
        "loan_approval",
        accepted(ing, record, 1, start=8),
        ["s"],
        NOW,
        kafka_file_name("aif.x-1.raw", 1, 0, 0),
    )
    # crash: nothing published; the group committed offset 4 on partition 2
    restarted = store(tmp_path, loan, ing)
    assert restarted.reconcile("loan_approval", "aif.x-1.raw", 2, 4) == (1, 1)
    assert restarted.get("loan_approval").version == expected  # the version its records were stamped with
    assert not (tmp_path / "loan_approval" / pending[0].path).exists()
    assert (tmp_path / "loan_approval" / other[0].path).exists()  # another partition is not touched
    assert restarted.reconcile("loan_approval", "aif.x-1.raw", 2, 4) == (0, 0)  # idempotent
    assert restarted.reconcile("loan_approval", "aif.x-1.raw", 1, 0) == (0, 1)


def test_ingesting_the_same_offsets_again_never_overwrites_a_published_file(
    tmp_path: Path, loan: UseCase, ing: UseCaseIngestor, record: dict[str, Any]
) -> None:
    ds = store(tmp_path, loan, ing)
    rows = accepted(ing, record, 2)
    first = ds.stage("loan_approval", rows, ["s"] * 2, NOW, kafka_file_name("t", 0, 0, 1))
    v1 = ds.publish("loan_approval", first)
    again = ds.stage(
        "loan_approval", rows, ["s"] * 2, NOW + timedelta(seconds=1), kafka_file_name("t", 0, 0, 1)
    )
    assert again[0].path != first[0].path and (tmp_path / "loan_approval" / first[0].path).exists()
    ds.publish("loan_approval", again)
    assert ds.read("loan_approval", v1.version).num_rows == 2  # type: ignore[union-attr]
    assert ds.read("loan_approval").num_rows == 2  # one row per record id


def test_partial_manifest_line_is_dropped(
    tmp_path: Path, loan: UseCase, ing: UseCaseIngestor, record: dict[str, Any]
) -> None:
    ds = store(tmp_path, loan, ing)
    v1 = ds.publish("loan_approval", ds.stage("loan_approval", accepted(ing, record, 2), ["a"] * 2, NOW))
    manifest = tmp_path / "loan_approval" / MANIFEST
    with manifest.open("a") as fh:
        fh.write('{"version": "cut sho')
    again = store(tmp_path, loan, ing)
    assert again.get("loan_approval").version == v1.version  # type: ignore[union-attr]
    v2 = again.publish(
        "loan_approval", again.stage("loan_approval", accepted(ing, record, 1, start=2), ["a"], NOW)
    )
    assert v2 is not None and v2.parent == v1.version  # type: ignore[union-attr]
    assert [json.loads(line)["version"] for line in manifest.read_text().splitlines()] == [
        v1.version,
        v2.version,
    ]  # type: ignore[union-attr]


def test_discard_removes_staged_files(
    tmp_path: Path, loan: UseCase, ing: UseCaseIngestor, record: dict[str, Any]
) -> None:
    ds = store(tmp_path, loan, ing)
    files = ds.stage("loan_approval", accepted(ing, record, 2), ["a"] * 2, NOW)
    ds.discard("loan_approval", files)
    assert not list((tmp_path / "loan_approval").rglob("*.parquet"))
    assert ds.read("loan_approval").num_rows == 0
