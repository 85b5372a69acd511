"""The monitor's store: drift reports, alerts, tracker state, an outbox of events, and the
journal and checkpoint that keep its in-memory state across a crash.

SQLAlchemy; SQLite by default, PostgreSQL in production (same code). One call,
:meth:`MonitorStore.commit`, writes everything one event produced in one transaction —
reports, alerts, state, and the events to publish (the outbox) — so a crash either
keeps all of it or none: a restarted monitor republishes what is in the outbox and
never opens the same alarm episode twice. Writes are idempotent by id (a replayed
event that produces the same report id keeps the first). The journal entry of each event
goes in that same transaction, and :meth:`MonitorStore.checkpoint` replaces the journal
with a snapshot of the state it built (:mod:`services.monitor.journal`).

Reports are stored as their ``DriftReport`` protobuf (the contract is the document),
with the columns they are filtered by. The outbox is an :class:`~libs.bus.outbox.OutboxSource`:
:class:`~libs.bus.outbox.OutboxRelay` publishes its rows (event id = report id or request
id, key = use case) and marks them sent.

The schema is created and upgraded by the Alembic migrations in ``MIGRATIONS``
(:meth:`MonitorStore.from_url` runs them); database errors leave as :mod:`libs.errors`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, Self

from google.protobuf.message import Message
from sqlalchemy import Boolean, DateTime, Integer, LargeBinary, String, Text, delete, func, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aifactory.monitor.v1 import events_pb2 as pb_events
from aifactory.monitor.v1 import monitor_service_pb2 as pb
from libs.bus import Outgoing, topics
from libs.errors import NotFound
from libs.sql import Database, aware_utc, naive_utc, translate
from services.monitor import convert
from services.monitor.domain import Alert, Effects, Severity, VersionKey
from services.monitor.journal import Entry

DRIFT = "drift"
ROLLBACK = "rollback"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class _Base(DeclarativeBase):
    pass


class _Report(_Base):
    __tablename__ = "monitor_drift_reports"

    report_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    use_case: Mapped[str] = mapped_column(String(64), index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    drift_detected: Mapped[bool] = mapped_column(Boolean, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    report: Mapped[bytes] = mapped_column(LargeBinary)


class _Alert(_Base):
    __tablename__ = "monitor_alerts"

    alert_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    use_case: Mapped[str] = mapped_column(String(64), index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    severity: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    report_id: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class _State(_Base):
    __tablename__ = "monitor_state"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class _Outbox(_Base):
    __tablename__ = "monitor_outbox"

    event_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # drift | rollback
    use_case: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)


class _Journal(_Base):
    """Every event applied since the checkpoint, in order (see :mod:`services.monitor.journal`)."""

    __tablename__ = "monitor_journal"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(16))
    doc: Mapped[str] = mapped_column(Text)


class _Checkpoint(_Base):
    """The in-memory state before the first journal entry (one row, ``name`` = "monitor")."""

    __tablename__ = "monitor_checkpoint"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


_CHECKPOINT = "monitor"

METADATA = _Base.metadata
_EVENTS: dict[str, type[Message]] = {DRIFT: pb_events.DriftDetected, ROLLBACK: pb_events.RollbackRequested}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ReportReader(Protocol):
    """What the gRPC servicer reads."""

    def list_reports(
        self,
        *,
        use_case: str = "",
        model: VersionKey | None = None,
        drift_only: bool = False,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[pb.DriftReport]: ...

    def get_report(self, report_id: str) -> pb.DriftReport: ...

    def list_alerts(
        self,
        *,
        use_case: str = "",
        min_severity: int = 0,
        open_only: bool = False,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Alert]: ...


class MonitorStore:
    """Reports, alerts, state and outbox of the monitor in ``db`` (already migrated)."""

    def __init__(
        self,
        db: Database,
        *,
        drift_topic: str = topics.DRIFT_DETECTED,
        rollback_topic: str = topics.ROLLBACK_REQUESTED,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._db = db
        self._topics = {DRIFT: drift_topic, ROLLBACK: rollback_topic}
        self._clock = clock

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        drift_topic: str = topics.DRIFT_DETECTED,
        rollback_topic: str = topics.ROLLBACK_REQUESTED,
        clock: Callable[[], datetime] = _utcnow,
    ) -> Self:
        """A store on ``url``, its schema migrated to head first."""
        db = Database.migrated(url, MIGRATIONS, METADATA)
        return cls(db, drift_topic=drift_topic, rollback_topic=rollback_topic, clock=clock)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ writes
    def commit(self, effects: Effects, now: datetime, journal: Sequence[Entry] = ()) -> None:
        """Persist ``effects`` in one transaction (idempotent by id), with the ``journal``
        entries of the events that produced them."""
        stamp = naive_utc(now)
        with translate("monitor effects"), self._db.write() as s:
            s.add_all(
                _Journal(event_id=e.event_id, kind=e.kind, doc=json.dumps(e.doc, separators=(",", ":")))
                for e in journal
            )
            for r in effects.reports:
                if s.get(_Report, r.report_id) is None:
                    s.add(
                        _Report(
                            report_id=r.report_id,
                            use_case=r.model.use_case,
                            model_name=r.model.model_name,
                            version=r.model.version,
                            drift_detected=r.drift_detected,
                            created_at=naive_utc(r.created_at),
                            report=convert.report_pb(r).SerializeToString(),
                        )
                    )
            for a in effects.alerts:
                if s.get(_Alert, a.alert_id) is None:
                    s.add(
                        _Alert(
                            alert_id=a.alert_id,
                            use_case=a.model.use_case,
                            model_name=a.model.model_name,
                            version=a.model.version,
                            severity=int(a.severity),
                            kind=a.kind,
                            message=a.message,
                            report_id=a.report_id,
                            created_at=naive_utc(a.created_at),
                            resolved_at=naive_utc(a.resolved_at) if a.resolved_at else None,
                        )
                    )
            for alert_id, at in effects.resolved.items():
                s.execute(
                    update(_Alert)
                    .where(_Alert.alert_id == alert_id, _Alert.resolved_at.is_(None))
                    .values(resolved_at=naive_utc(at))
                )
            for key, value in effects.states.items():
                row = s.get(_State, key)
                text = json.dumps(value, separators=(",", ":"))
                if row is None:
                    s.add(_State(key=key, value=text, updated_at=stamp))
                else:
                    row.value, row.updated_at = text, stamp
            outgoing: list[tuple[str, str, str, bytes]] = [
                (a.report_id, DRIFT, a.model.use_case, convert.drift_detected_pb(a).SerializeToString())
                for a in effects.alarms
            ] + [
                (r.request_id, ROLLBACK, r.model.use_case, convert.rollback_pb(r).SerializeToString())
                for r in effects.rollbacks
            ]
            for event_id, kind, use_case, payload in outgoing:
                if s.get(_Outbox, event_id) is None:
                    s.add(
                        _Outbox(
                            event_id=event_id, kind=kind, use_case=use_case, payload=payload, created_at=stamp
                        )
                    )

    # ------------------------------------------------------------------ outbox (OutboxSource)
    def pending(self, limit: int = 100) -> list[tuple[str, Outgoing]]:
        """Unpublished events, oldest first, keyed by event id."""
        q = (
            select(_Outbox)
            .where(_Outbox.sent_at.is_(None))
            .order_by(_Outbox.created_at, _Outbox.event_id)
            .limit(limit)
        )
        with translate("the monitor outbox"), self._db.read() as s:
            return [
                (
                    r.event_id,
                    Outgoing(
                        self._topics[r.kind],
                        _EVENTS[r.kind].FromString(r.payload),
                        r.use_case,
                        key=r.use_case,
                        event_id=r.event_id,
                    ),
                )
                for r in s.scalars(q).all()
            ]

    def mark_sent(self, keys: Sequence[str]) -> None:
        with translate("the monitor outbox"), self._db.write() as s:
            s.execute(
                update(_Outbox).where(_Outbox.event_id.in_(keys)).values(sent_at=naive_utc(self._clock()))
            )

    def checkpoint(self, state: Mapping[str, Any], now: datetime) -> int:
        """Save ``state`` (the in-memory state as of the last journal entry) and empty the
        journal it covers, in one transaction; returns how many entries it covered."""
        text = json.dumps(state, separators=(",", ":"))
        with translate("the monitor checkpoint"), self._db.write() as s:
            # The monitor journals and checkpoints one at a time, so the state covers every
            # entry there is. (Emptied, the table may number its entries from 1 again.)
            covered = s.scalar(select(func.count()).select_from(_Journal)) or 0
            s.execute(delete(_Journal))
            row = s.get(_Checkpoint, _CHECKPOINT)
            if row is None:
                s.add(_Checkpoint(name=_CHECKPOINT, value=text, updated_at=naive_utc(now)))
            else:
                row.value, row.updated_at = text, naive_utc(now)
            return covered

    def recovery(self) -> tuple[dict[str, Any] | None, list[Entry]]:
        """The last checkpoint (None: none yet) and the journal after it, oldest first."""
        with translate("the monitor journal"), self._db.read() as s:
            row = s.get(_Checkpoint, _CHECKPOINT)
            entries = [
                Entry(r.event_id, r.kind, json.loads(r.doc))
                for r in s.scalars(select(_Journal).order_by(_Journal.seq))
            ]
            return (json.loads(row.value) if row is not None else None), entries

    def states(self) -> dict[str, dict[str, Any]]:
        with translate("monitor state"), self._db.read() as s:
            return {r.key: json.loads(r.value) for r in s.scalars(select(_State)).all()}

    # ------------------------------------------------------------------ reads
    def list_reports(
        self,
        *,
        use_case: str = "",
        model: VersionKey | None = None,
        drift_only: bool = False,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[pb.DriftReport]:
        q = select(_Report.report)
        if use_case:
            q = q.where(_Report.use_case == use_case)
        if model is not None:
            if model.model_name:
                q = q.where(_Report.model_name == model.model_name)
            if model.version:
                q = q.where(_Report.version == model.version)
        if drift_only:
            q = q.where(_Report.drift_detected.is_(True))
        if since is not None:
            q = q.where(_Report.created_at >= naive_utc(since))
        q = q.order_by(_Report.created_at.desc(), _Report.report_id.desc()).limit(limit).offset(offset)
        with translate("drift reports"), self._db.read() as s:
            return [pb.DriftReport.FromString(blob) for blob in s.scalars(q).all()]

    def get_report(self, report_id: str) -> pb.DriftReport:
        with translate(f"drift report {report_id!r}"), self._db.read() as s:
            row = s.get(_Report, report_id)
            if row is None:
                raise NotFound(f"drift report {report_id!r} not found")
            return pb.DriftReport.FromString(row.report)

    def list_alerts(
        self,
        *,
        use_case: str = "",
        min_severity: int = 0,
        open_only: bool = False,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Alert]:
        q = select(_Alert)
        if use_case:
            q = q.where(_Alert.use_case == use_case)
        if min_severity:
            q = q.where(_Alert.severity >= min_severity)
        if open_only:
            q = q.where(_Alert.resolved_at.is_(None))
        if since is not None:
            q = q.where(_Alert.created_at >= naive_utc(since))
        q = q.order_by(_Alert.created_at.desc(), _Alert.alert_id.desc()).limit(limit).offset(offset)
        with translate("alerts"), self._db.read() as s:
            return [
                Alert(
                    r.alert_id,
                    VersionKey(r.use_case, r.model_name, r.version),
                    Severity(r.severity),
                    r.kind,
                    r.message,
                    r.report_id,
                    aware_utc(r.created_at) or r.created_at,
                    aware_utc(r.resolved_at),
                )
                for r in s.scalars(q).all()
            ]
