"""Data quality per use case and window: volume, null rates, out-of-range rates, rejections.

Every outcome (Kafka or gRPC) is counted in the use case's open window. A window
closes after ``window_seconds`` or, when ``window_records`` > 0, once it has seen that
many records, whichever comes first; a closed window that saw records becomes a
:class:`QualityReport` (published as an event on the quality topic) and sets the
gauges below. Counters move with every batch.

Prometheus names (on the service's metrics endpoint):

- ``ingestion_records_total{use_case, outcome}``: accepted / rejected records
- ``ingestion_rejections_total{use_case, code}``: rejected records by violation code
- ``ingestion_window_records{use_case}``: records in the last closed window
- ``ingestion_field_null_rate{use_case, field}``, ``ingestion_field_out_of_range_rate{...}``:
  of the last closed window; a field is out of range when it broke a range, enum or
  max_length rule; rates are over every record of the window (malformed ones included).

Counts are at-least-once: a batch replayed after a crash is counted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from opentelemetry.metrics import Meter

from aifactory.ingestion.v1 import events_pb2
from libs.bus import EventSink
from libs.usecase import UseCase
from services.ingestion.records import Outcome
from services.ingestion.violations import OUT_OF_RANGE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldQuality:
    field: str
    null_count: int
    null_rate: float
    out_of_range_count: int
    out_of_range_rate: float


@dataclass(frozen=True)
class QualityReport:
    report_id: str
    use_case: str
    start: datetime
    end: datetime
    record_count: int
    accepted_count: int
    rejected_count: int
    fields: list[FieldQuality]
    rejections_by_code: dict[str, int]

    def to_proto(self) -> events_pb2.QualityReport:
        msg = events_pb2.QualityReport(
            report_id=self.report_id,
            use_case=self.use_case,
            record_count=self.record_count,
            accepted_count=self.accepted_count,
            rejected_count=self.rejected_count,
            fields=[
                events_pb2.FieldQuality(
                    field=f.field,
                    null_count=f.null_count,
                    null_rate=f.null_rate,
                    out_of_range_count=f.out_of_range_count,
                    out_of_range_rate=f.out_of_range_rate,
                )
                for f in self.fields
            ],
            rejections_by_code=self.rejections_by_code,
        )
        msg.window.start.FromDatetime(self.start)
        msg.window.end.FromDatetime(self.end)
        return msg


@dataclass
class _Window:
    start: datetime
    records: int = 0
    accepted: int = 0
    nulls: Counter[str] = field(default_factory=Counter)
    out_of_range: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)


Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class QualityTracker:
    """Windows of quality statistics for every loaded use case."""

    def __init__(
        self,
        usecases: Mapping[str, UseCase],
        meter: Meter,
        *,
        window_seconds: float = 10.0,
        window_records: int = 0,
        clock: Clock = _utcnow,
    ) -> None:
        self._fields = {name: list(uc.fields) for name, uc in usecases.items()}
        self._length = timedelta(seconds=window_seconds)
        self._max_records = window_records
        self._clock = clock
        now = clock()
        self._windows = {name: _Window(now) for name in usecases}
        self._records = meter.create_counter(
            "ingestion_records", unit="1", description="records ingested, by outcome"
        )
        self._rejections = meter.create_counter(
            "ingestion_rejections", unit="1", description="rejected records, by violation code"
        )
        self._window_records = meter.create_gauge(
            "ingestion_window_records", unit="1", description="records in the last closed quality window"
        )
        self._null_rate = meter.create_gauge(
            "ingestion_field_null_rate",
            unit="1",
            description="share of records with the field null or missing",
        )
        self._oor_rate = meter.create_gauge(
            "ingestion_field_out_of_range_rate",
            unit="1",
            description="share of records with the field out of range",
        )

    def observe(self, use_case: str, outcomes: Iterable[Outcome]) -> None:
        """Count a batch of outcomes of one use case."""
        window = self._windows[use_case]
        codes: Counter[str] = Counter()
        accepted = rejected = 0
        for o in outcomes:
            window.records += 1
            if o.nulls:
                window.nulls.update(o.nulls)
            if o.violations:
                rejected += 1
                seen = {v.code for v in o.violations}
                codes.update(seen)
                window.out_of_range.update({v.field for v in o.violations if v.code in OUT_OF_RANGE})
            else:
                accepted += 1
        window.accepted += accepted
        window.by_code.update(codes)
        if accepted:
            self._records.add(accepted, {"use_case": use_case, "outcome": "accepted"})
        if rejected:
            self._records.add(rejected, {"use_case": use_case, "outcome": "rejected"})
        for code, n in codes.items():
            self._rejections.add(n, {"use_case": use_case, "code": code})

    def close_due(self, *, force: bool = False) -> list[QualityReport]:
        """Close every window that is due (all of them with ``force``); reports of non-empty ones."""
        now = self._clock()
        reports = []
        for use_case, window in self._windows.items():
            full = self._max_records > 0 and window.records >= self._max_records
            if not (force or full or now - window.start >= self._length):
                continue
            self._windows[use_case] = _Window(now)
            if window.records:
                reports.append(self._report(use_case, window, now))
        return reports

    def _report(self, use_case: str, window: _Window, end: datetime) -> QualityReport:
        n = window.records
        fields = [
            FieldQuality(
                f, window.nulls[f], window.nulls[f] / n, window.out_of_range[f], window.out_of_range[f] / n
            )
            for f in self._fields[use_case]
        ]
        self._window_records.set(n, {"use_case": use_case})
        for f in fields:
            attrs = {"use_case": use_case, "field": f.field}
            self._null_rate.set(f.null_rate, attrs)
            self._oor_rate.set(f.out_of_range_rate, attrs)
        return QualityReport(
            uuid.uuid4().hex,
            use_case,
            window.start,
            end,
            n,
            window.accepted,
            n - window.accepted,
            fields,
            dict(window.by_code),
        )


class QualityReporter:
    """Closes due windows every ``tick`` seconds and publishes their reports as events."""

    def __init__(
        self, tracker: QualityTracker, publisher: EventSink, topic: str, *, tick: float = 1.0
    ) -> None:
        self._tracker = tracker
        self._publisher = publisher
        self._topic = topic
        self._tick = tick
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._tick)
            await self.flush(force=self._stopping.is_set())

    async def flush(self, *, force: bool = False) -> list[QualityReport]:
        reports = self._tracker.close_due(force=force)
        for report in reports:
            try:
                await self._publisher.publish(
                    self._topic,
                    report.to_proto(),
                    use_case=report.use_case,
                    key=report.use_case,
                    event_id=report.report_id,
                )
            except Exception:  # noqa: BLE001 - a lost report must not stop ingestion; metrics still have it
                log.exception("could not publish the quality report of %s", report.use_case)
        return reports

    async def stop(self) -> None:
        self._stopping.set()
