"""Evaluation reports the evaluator has produced, kept for ``GetEvaluationReport`` and for
idempotency (a replayed ``ModelTrained`` finds the report of its version).

A report is stored as its ``EvaluationReport`` protobuf (the contract is the document),
with the columns it is looked up by. SQLAlchemy; SQLite by default.
"""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, LargeBinary, String, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from aifactory.evaluator.v1 import evaluator_service_pb2 as pb
from libs.errors import NotFound
from libs.lifecycle.sql import engine_for


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
    report: Mapped[bytes] = mapped_column(LargeBinary)


class ReportStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        _Base.metadata.create_all(engine)

    @classmethod
    def from_url(cls, url: str) -> ReportStore:
        return cls(engine_for(url))

    def close(self) -> None:
        self._engine.dispose()

    def save(self, report: pb.EvaluationReport, *, trigger: str | None = None) -> pb.EvaluationReport:
        """Store ``report``; when its id or trigger is taken, return the stored one (idempotent)."""
        row = _ReportRow(report_id=report.report_id, use_case=report.model.use_case,
                         model_name=report.model.model_name, version=report.model.version, trigger=trigger,
                         created_at=datetime.now(UTC).replace(tzinfo=None), report=report.SerializeToString())
        try:
            with Session(self._engine) as session, session.begin():
                session.add(row)
        except IntegrityError:
            existing = self.find(trigger) if trigger else None
            return existing or self.get(report.report_id)
        return report

    def get(self, report_id: str) -> pb.EvaluationReport:
        with Session(self._engine) as session:
            row = session.get(_ReportRow, report_id)
            if row is None:
                raise NotFound(f"evaluation report {report_id!r} not found")
            return pb.EvaluationReport.FromString(row.report)

    def find(self, trigger: str) -> pb.EvaluationReport | None:
        with Session(self._engine) as session:
            row = session.scalars(select(_ReportRow).where(_ReportRow.trigger == trigger)).first()
            return None if row is None else pb.EvaluationReport.FromString(row.report)
