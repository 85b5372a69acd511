"""Report store: JSON round trip (NaN included), idempotent save, and a database from before
the migrations (reports as protobuf bytes, no alembic_version) read after upgrading."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, DateTime, Integer, LargeBinary, MetaData, String, Table, create_engine, insert

from libs.errors import NotFound
from libs.lifecycle.data import DatasetVersion
from libs.lifecycle.frames import Window
from libs.lifecycle.registry import MetricPoint, ModelKey
from services.evaluator import convert
from services.evaluator.domain import GateResult, Report, SliceMetrics
from services.evaluator.store import ReportStore

pytestmark = pytest.mark.timeout(30)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def report(report_id: str = "eval-1", *, champion: bool = True) -> Report:
    return Report(
        report_id=report_id,
        model=ModelKey("loan", "loan", 2),
        passed=False,
        gates=(
            GateResult(
                "metric_floor", "auc", float("nan"), 0.7, False, ">=", "auc is undefined on the holdout"
            ),
            GateResult("champion", "", 0.0, 0.0, True, "", "skipped: champion loan/loan@v1 other inputs"),
        ),
        candidate_metrics=(
            MetricPoint("auc", float("nan"), "holdout"),
            MetricPoint("rows", 300.0, "holdout"),
        ),
        dataset=DatasetVersion("loan", "abc", "file:///x.parquet"),
        window=Window(T0 - timedelta(hours=1), T0),
        created_at=T0 + timedelta(microseconds=123456),
        champion=ModelKey("loan", "loan", 1) if champion else None,
        champion_metrics=(MetricPoint("auc", 0.8, "holdout"),) if champion else (),
        slices={"f": SliceMetrics((MetricPoint("auc", 0.75, "holdout"),), 120)},
    )


def same(a: Report, b: Report) -> bool:
    """Equal, reading NaN as equal to NaN."""
    return convert.report_pb(a).SerializeToString(deterministic=True) == convert.report_pb(
        b
    ).SerializeToString(deterministic=True)


def test_round_trip_and_idempotent_save(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'reports.db'}"
    store = ReportStore.from_url(url)
    first = report()
    assert store.save(first, trigger="trained:loan/loan@v2") is first
    stored = store.get("eval-1")
    assert math.isnan(stored.candidate_metrics[0].value) and same(stored, first)
    # The same trigger (a replayed ModelTrained) or the same id returns what is stored.
    assert same(store.save(report("eval-2"), trigger="trained:loan/loan@v2"), first)
    assert same(store.save(report("eval-1", champion=False)), first)
    assert store.find("trained:loan/loan@v9") is None
    with pytest.raises(NotFound):
        store.get("nope")
    store.close()


def test_a_database_from_before_the_migrations_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "reports.db"
    # The table as the evaluator created it with create_all, holding protobuf bytes.
    old = Table(
        "evaluation_reports",
        MetaData(),
        Column("report_id", String(100), primary_key=True),
        Column("use_case", String(64), index=True, nullable=False),
        Column("model_name", String(200), nullable=False),
        Column("version", Integer, nullable=False),
        Column("trigger", String(300), unique=True, nullable=True),
        Column("created_at", DateTime, nullable=False),
        Column("report", LargeBinary, nullable=False),
    )
    engine = create_engine(f"sqlite:///{path}")
    old.metadata.create_all(engine)
    kept = [report(), report("eval-2", champion=False)]
    with engine.begin() as conn:
        for r, trigger in zip(kept, ("trained:loan/loan@v2", None), strict=True):
            conn.execute(
                insert(old).values(
                    report_id=r.report_id,
                    use_case="loan",
                    model_name="loan",
                    version=2,
                    trigger=trigger,
                    created_at=T0.replace(tzinfo=None),
                    report=convert.report_pb(r).SerializeToString(),
                )
            )
    engine.dispose()
    store = ReportStore.from_url(f"sqlite:///{path}")
    assert same(store.get("eval-1"), kept[0]) and same(store.get("eval-2"), kept[1])
    found = store.find("trained:loan/loan@v2")
    assert found is not None and found.report_id == "eval-1"
    store.close()
