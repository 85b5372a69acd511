"""Where training jobs are kept: SQL through :class:`libs.sql.Database` (SQLite by default).

The store outlives the process, so a restarted trainer knows its queued, waiting and
interrupted jobs. The schema is created and upgraded by the Alembic migrations in
``MIGRATIONS`` (:meth:`JobStore.from_url` runs them); database errors leave as
:mod:`libs.errors`. Called from one event loop; each call is one short transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Integer, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from libs.errors import AlreadyExists, NotFound
from libs.lifecycle.frames import Window
from libs.lifecycle.registry import MetricPoint, ModelKey
from libs.sql import Database, aware_utc, naive_utc, translate
from services.trainer.domain import Job, JobState, Reason

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class _Base(DeclarativeBase):
    pass


class _JobRow(_Base):
    __tablename__ = "training_jobs"

    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    use_case: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(String(16))
    drift_report_id: Mapped[str] = mapped_column(String(200), default="")
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    requested_roles: Mapped[str] = mapped_column(Text, default="[]")
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    window_start: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    params: Mapped[str] = mapped_column(Text, default="{}")
    effective_params: Mapped[str] = mapped_column(Text, default="{}")
    run_id: Mapped[str] = mapped_column(String(200), default="")
    model_name: Mapped[str] = mapped_column(String(200), default="")
    model_version: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[str] = mapped_column(Text, default="[]")
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    due_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    artifact_sha256: Mapped[str] = mapped_column(String(64), default="")
    artifact_uri: Mapped[str] = mapped_column(Text, default="")


METADATA = _Base.metadata


def _to_row(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "use_case": job.use_case,
        "state": job.state.value,
        "reason": job.reason.value,
        "drift_report_id": job.drift_report_id,
        "requested_by": job.requested_by,
        "requested_roles": json.dumps(list(job.requested_roles)),
        "seed": job.seed,
        "window_start": naive_utc(job.window.start) if job.window else None,
        "window_end": naive_utc(job.window.end) if job.window else None,
        "params": json.dumps(job.params, sort_keys=True),
        "effective_params": json.dumps(job.effective_params, sort_keys=True),
        "run_id": job.run_id,
        "model_name": job.model.model_name if job.model else "",
        "model_version": job.model.version if job.model else 0,
        "metrics": json.dumps([[m.name, m.value, m.split, m.step] for m in job.metrics]),
        "message": job.message,
        "created_at": naive_utc(job.created_at),
        "started_at": naive_utc(job.started_at),
        "finished_at": naive_utc(job.finished_at),
        "due_at": naive_utc(job.due_at),
        "artifact_sha256": job.artifact_sha256,
        "artifact_uri": job.artifact_uri,
    }


def _from_row(row: _JobRow) -> Job:
    window = None
    if row.window_start is not None and row.window_end is not None:
        window = Window(row.window_start.replace(tzinfo=UTC), row.window_end.replace(tzinfo=UTC))
    return Job(
        job_id=row.job_id,
        use_case=row.use_case,
        reason=Reason(row.reason),
        state=JobState(row.state),
        drift_report_id=row.drift_report_id,
        requested_by=row.requested_by,
        requested_roles=tuple(json.loads(row.requested_roles)),
        seed=row.seed,
        window=window,
        params=json.loads(row.params),
        effective_params=json.loads(row.effective_params),
        run_id=row.run_id,
        model=ModelKey(row.use_case, row.model_name, row.model_version) if row.model_version else None,
        metrics=tuple(MetricPoint(n, v, s, st) for n, v, s, st in json.loads(row.metrics)),
        message=row.message,
        created_at=row.created_at.replace(tzinfo=UTC),
        started_at=aware_utc(row.started_at),
        finished_at=aware_utc(row.finished_at),
        due_at=aware_utc(row.due_at),
        artifact_sha256=row.artifact_sha256,
        artifact_uri=row.artifact_uri,
    )


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"training job {job_id!r} not found")


class JobStore:
    """Jobs in ``db`` (already migrated)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    def from_url(cls, url: str) -> JobStore:
        """A store on ``url``, its schema migrated to head first."""
        db = Database.migrated(url, MIGRATIONS, METADATA)
        return cls(db)

    def close(self) -> None:
        self._db.close()

    def create(self, job: Job) -> tuple[Job, bool]:
        """Insert ``job``; when its id exists, return the stored job and False (idempotent submit)."""
        try:
            with translate(f"training job {job.job_id!r}"), self._db.write() as session:
                session.add(_JobRow(**_to_row(job)))
        except AlreadyExists:
            return self.get(job.job_id), False
        return job, True

    def get(self, job_id: str) -> Job:
        with translate(f"training job {job_id!r}"), self._db.read() as session:
            row = session.get(_JobRow, job_id)
            if row is None:
                raise _not_found(job_id)
            return _from_row(row)

    def update(self, job_id: str, **changes: Any) -> Job:
        """Apply ``changes`` (Job fields) and return the updated job."""
        with translate(f"training job {job_id!r}"), self._db.write() as session:
            row = session.get(_JobRow, job_id)
            if row is None:
                raise _not_found(job_id)
            job = replace(_from_row(row), **changes)
            for key, value in _to_row(job).items():
                setattr(row, key, value)
        return job

    def list(
        self,
        *,
        use_case: str = "",
        states: Sequence[JobState] = (),
        limit: int = 50,
        offset: int = 0,
        oldest_first: bool = False,
    ) -> list[Job]:
        query = select(_JobRow)
        if use_case:
            query = query.where(_JobRow.use_case == use_case)
        if states:
            query = query.where(_JobRow.state.in_([s.value for s in states]))
        order = (
            (_JobRow.created_at.asc(), _JobRow.job_id.asc())
            if oldest_first
            else (_JobRow.created_at.desc(), _JobRow.job_id.desc())
        )
        query = query.order_by(*order).offset(offset).limit(limit)
        with translate("training jobs"), self._db.read() as session:
            return [_from_row(r) for r in session.scalars(query)]
