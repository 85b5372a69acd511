"""Evaluation reports the evaluator has produced, kept for ``GetEvaluationReport`` and for
idempotency (a replayed ``ModelTrained`` finds the report of its version).

A report is stored as a JSON document (:func:`report_json`), with the columns it is
looked up by; SQL through :class:`libs.sql.Database` (SQLite by default). The schema is
created and upgraded by the Alembic migrations in ``MIGRATIONS`` (:meth:`ReportStore.from_url`
runs them); database errors leave as :mod:`libs.errors`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from libs.errors import AlreadyExists, NotFound
from libs.lifecycle.data import DatasetVersion
from libs.lifecycle.frames import Window
from libs.lifecycle.registry import MetricPoint, ModelKey
from libs.sql import Database, translate
from services.evaluator.domain import GateResult, Report, SliceMetrics

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class _Base(DeclarativeBase):
    pass


class _ReportRow(_Base):
    __tablename__ = "evaluation_reports"

    report_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    use_case: Mapped[str] = mapped_column(String(64), index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    # What caused it: "trained:<use case>/<model>@v<n>" for the automatic evaluation of a
    # version (one per version), empty for on-demand ones.
    trigger: Mapped[str | None] = mapped_column(String(300), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)


METADATA = _Base.metadata


# -- the report as JSON ----------------------------------------------------------------
# Non-finite floats (an undefined metric is NaN) as strings: PostgreSQL's JSON has no NaN.


def _num(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _time(value: datetime) -> str:
    at = value.astimezone(UTC)
    # To the microsecond, as the report's protobuf Timestamp keeps it (a pandas Timestamp
    # would write nanoseconds).
    return datetime(
        at.year, at.month, at.day, at.hour, at.minute, at.second, at.microsecond, tzinfo=UTC
    ).isoformat()


def _key(key: ModelKey) -> dict[str, Any]:
    return {"use_case": key.use_case, "model_name": key.model_name, "version": key.version}


def _metric(m: MetricPoint) -> dict[str, Any]:
    return {"name": m.name, "value": _num(m.value), "split": m.split, "step": m.step}


def _metric_of(d: dict[str, Any]) -> MetricPoint:
    return MetricPoint(d["name"], float(d["value"]), d["split"], d["step"])


def report_json(report: Report) -> dict[str, Any]:
    return {
        "report_id": report.report_id,
        "model": _key(report.model),
        "passed": report.passed,
        "gates": [
            {
                "gate": g.gate,
                "metric": g.metric,
                "value": _num(g.value),
                "threshold": _num(g.threshold),
                "passed": g.passed,
                "comparator": g.comparator,
                "message": g.message,
            }
            for g in report.gates
        ],
        "candidate_metrics": [_metric(m) for m in report.candidate_metrics],
        "dataset": {
            "use_case": report.dataset.use_case,
            "version": report.dataset.version,
            "uri": report.dataset.uri,
        },
        "window": {"start": _time(report.window.start), "end": _time(report.window.end)},
        "created_at": _time(report.created_at),
        "champion": _key(report.champion) if report.champion is not None else None,
        "champion_metrics": [_metric(m) for m in report.champion_metrics],
        "slices": {
            k: {"metrics": [_metric(m) for m in s.metrics], "rows": s.rows} for k, s in report.slices.items()
        },
    }


def report_from_json(d: dict[str, Any]) -> Report:
    return Report(
        report_id=d["report_id"],
        model=ModelKey(**d["model"]),
        passed=d["passed"],
        gates=tuple(
            GateResult(
                g["gate"],
                g["metric"],
                float(g["value"]),
                float(g["threshold"]),
                g["passed"],
                g["comparator"],
                g["message"],
            )
            for g in d["gates"]
        ),
        candidate_metrics=tuple(_metric_of(m) for m in d["candidate_metrics"]),
        dataset=DatasetVersion(**d["dataset"]),
        window=Window(
            datetime.fromisoformat(d["window"]["start"]), datetime.fromisoformat(d["window"]["end"])
        ),
        created_at=datetime.fromisoformat(d["created_at"]),
        champion=ModelKey(**d["champion"]) if d["champion"] is not None else None,
        champion_metrics=tuple(_metric_of(m) for m in d["champion_metrics"]),
        slices={
            k: SliceMetrics(tuple(_metric_of(m) for m in s["metrics"]), s["rows"])
            for k, s in d["slices"].items()
        },
    )


# -- the store -------------------------------------------------------------------------


class ReportStore:
    """Reports in ``db`` (already migrated)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    def from_url(cls, url: str) -> ReportStore:
        """A store on ``url``, its schema migrated to head first."""
        db = Database.migrated(url, MIGRATIONS, METADATA)
        return cls(db)

    def close(self) -> None:
        self._db.close()

    def save(self, report: Report, *, trigger: str | None = None) -> Report:
        """Store ``report``; when its id or trigger is taken, return the stored one (idempotent)."""
        row = _ReportRow(
            report_id=report.report_id,
            use_case=report.model.use_case,
            model_name=report.model.model_name,
            version=report.model.version,
            trigger=trigger,
            created_at=datetime.now(UTC).replace(tzinfo=None),
            document=report_json(report),
        )
        try:
            with translate(f"evaluation report {report.report_id!r}"), self._db.write() as session:
                session.add(row)
        except AlreadyExists:
            existing = self.find(trigger) if trigger else None
            return existing or self.get(report.report_id)
        return report

    def get(self, report_id: str) -> Report:
        with translate(f"evaluation report {report_id!r}"), self._db.read() as session:
            row = session.get(_ReportRow, report_id)
            if row is None:
                raise NotFound(f"evaluation report {report_id!r} not found")
            return report_from_json(row.document)

    def find(self, trigger: str) -> Report | None:
        with translate(f"the evaluation report of {trigger!r}"), self._db.read() as session:
            row = session.scalars(select(_ReportRow).where(_ReportRow.trigger == trigger)).first()
            return None if row is None else report_from_json(row.document)
