"""Data quality per use case and window: volume, null rates, out-of-range rates, rejections.

Every outcome (Kafka or gRPC) is counted in the use case's open window. A window
closes after ``window_seconds`` or, when ``window_records`` > 0, once it has seen that
many records, whichever comes first; a closed window that saw records becomes a
:class:`QualityReport` (published as an event on the quality topic) and sets the
gauges below. Counters move with every batch.

Prometheus names (on the service's metrics endpoint):

- ``aif_ingestion_records_total{use_case, outcome}``: accepted / rejected records
- ``aif_ingestion_rejections_total{use_case, code}``: rejected records by violation code
- ``aif_ingestion_window_records{use_case}``: records in the last closed window
- ``aif_ingestion_field_null_rate{use_case, field}``, ``aif_ingestion_field_out_of_range_rate{...}``:
  of the last closed window; a field is out of range when it broke a range, enum or
  max_length rule; rates are over every record of the window (malformed ones included).

The open windows are ingestion state like any other: each transaction that counts
outcomes (a Kafka poll, a gRPC push) also carries the new window of its use case to the
compacted topic ``quality_state_topic``, keyed ``<transactional id>/<use case>``, and a
window closes in one transaction with its report and the fresh window that replaces it.
A batch whose transaction aborts is counted nowhere, a committed one exactly once, and
a restarted instance (same transactional id) resumes its open windows from that topic
(:func:`load_windows`) before it counts anything. Without a state topic (unit tests)
the windows are kept in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.metrics import Meter

from aifactory.ingestion.v1 import events_pb2
from libs.bus.readback import records_to_end
from libs.usecase import UseCase
from services.ingestion.publisher import Outgoing, event_message
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


_STATE_VERSION = 1


@dataclass
class Window:
    """One use case's open window: what it has counted since ``start``."""

    start: datetime
    records: int = 0
    accepted: int = 0
    nulls: Counter[str] = field(default_factory=Counter)
    out_of_range: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)

    def copy(self) -> Window:
        return replace(
            self,
            nulls=Counter(self.nulls),
            out_of_range=Counter(self.out_of_range),
            by_code=Counter(self.by_code),
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "v": _STATE_VERSION,
                "start": self.start.isoformat(),
                "records": self.records,
                "accepted": self.accepted,
                "nulls": self.nulls,
                "out_of_range": self.out_of_range,
                "by_code": self.by_code,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Window:
        doc = json.loads(data)
        if doc.get("v") != _STATE_VERSION:
            raise ValueError(f"quality window state version {doc.get('v')!r}, expected {_STATE_VERSION}")
        return cls(
            datetime.fromisoformat(doc["start"]),
            int(doc["records"]),
            int(doc["accepted"]),
            Counter(doc["nulls"]),
            Counter(doc["out_of_range"]),
            Counter(doc["by_code"]),
        )


@dataclass(frozen=True)
class Counted:
    """A batch of one use case counted into a copy of its window, not applied yet."""

    use_case: str
    window: Window
    accepted: int
    rejected: int
    codes: Counter[str]


@dataclass(frozen=True)
class Closing:
    """A due window, its report and the fresh window that replaces it, not applied yet."""

    use_case: str
    report: QualityReport | None  # None: the window saw nothing
    fresh: Window


class WindowState:
    """Where an instance keeps its open windows: a compacted topic, one key per use case."""

    def __init__(self, topic: str, instance: str) -> None:
        self.topic = topic
        self.instance = instance

    def key(self, use_case: str) -> bytes:
        return f"{self.instance}/{use_case}".encode()

    def message(self, use_case: str, window: Window) -> Outgoing:
        return Outgoing(self.topic, window.to_json(), self.key(use_case), [])


async def load_windows(
    bootstrap: str, state: WindowState, kafka_options: Mapping[str, Any] | None = None
) -> dict[str, Window]:
    """The open windows ``state.instance`` last committed, by use case.

    Call it once the instance's transactional producers have started (they settle what a
    predecessor left open), so the committed state read here is final."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **(kafka_options or {}),
    )
    await consumer.start()
    found: dict[str, Window] = {}
    prefix = f"{state.instance}/".encode()
    try:
        partitions = [
            TopicPartition(state.topic, p) for p in sorted(await _partitions(consumer, state.topic))
        ]
        if not partitions:
            return found
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async for r in records_to_end(consumer, partitions, poll_ms=1000):
            if r.key and r.key.startswith(prefix) and r.value is not None:
                found[r.key[len(prefix) :].decode()] = Window.from_json(r.value)
    finally:
        await consumer.stop()
    return found


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):  # metadata for a topic just created may take a moment
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        await consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh
        await asyncio.sleep(0.1)
    return set()


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
        self._windows = {name: Window(now) for name in usecases}
        self._records = meter.create_counter(
            "aif.ingestion.records", unit="1", description="records ingested, by outcome"
        )
        self._rejections = meter.create_counter(
            "aif.ingestion.rejections", unit="1", description="rejected records, by violation code"
        )
        self._window_records = meter.create_gauge(
            "aif.ingestion.window.records", unit="1", description="records in the last closed quality window"
        )
        self._null_rate = meter.create_gauge(
            "aif.ingestion.field.null_rate",
            unit="1",
            description="share of records with the field null or missing",
        )
        self._oor_rate = meter.create_gauge(
            "aif.ingestion.field.out_of_range_rate",
            unit="1",
            description="share of records with the field out of range",
        )

    def resume(self, windows: Mapping[str, Window]) -> None:
        """Take back the open windows a previous process of this instance committed."""
        for use_case, window in windows.items():
            if use_case in self._windows:
                self._windows[use_case] = window

    def track(self, use_case: str, uc: UseCase) -> None:
        """Count ``use_case`` too (applied while running); a new version keeps its open window."""
        self._fields[use_case] = list(uc.fields)
        self._windows.setdefault(use_case, Window(self._clock()))

    def observe(self, use_case: str, outcomes: Iterable[Outcome]) -> None:
        """Count a batch of outcomes of one use case (:meth:`count` then :meth:`apply`)."""
        self.apply([self.count(use_case, outcomes)])

    def count(self, use_case: str, outcomes: Iterable[Outcome]) -> Counted:
        """A batch counted into a copy of the use case's window; nothing changes until
        :meth:`apply` (called once the transaction carrying the copy has committed)."""
        window = self._windows[use_case].copy()
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
        return Counted(use_case, window, accepted, rejected, codes)

    def apply(self, counted: Sequence[Counted]) -> None:
        """The transaction carrying ``counted`` committed: they are the open windows now."""
        for c in counted:
            self._windows[c.use_case] = c.window
            if c.accepted:
                self._records.add(c.accepted, {"use_case": c.use_case, "outcome": "accepted"})
            if c.rejected:
                self._records.add(c.rejected, {"use_case": c.use_case, "outcome": "rejected"})
            for code, n in c.codes.items():
                self._rejections.add(n, {"use_case": c.use_case, "code": code})

    def close_due(self, *, force: bool = False) -> list[QualityReport]:
        """Close every window that is due (all of them with ``force``); reports of non-empty ones."""
        closing = self.due(force=force)
        self.closed(closing)
        return [c.report for c in closing if c.report is not None]

    def due(self, *, force: bool = False) -> list[Closing]:
        """The windows due to close (all of them with ``force``), not closed yet."""
        now = self._clock()
        out = []
        for use_case, window in self._windows.items():
            full = self._max_records > 0 and window.records >= self._max_records
            if force or full or now - window.start >= self._length:
                report = self._report(use_case, window, now) if window.records else None
                out.append(Closing(use_case, report, Window(now)))
        return out

    def closed(self, closing: Sequence[Closing]) -> None:
        """The reports of ``closing`` are published: open the fresh windows, set the gauges."""
        for c in closing:
            self._windows[c.use_case] = c.fresh
            if c.report is None:
                continue
            self._window_records.set(c.report.record_count, {"use_case": c.use_case})
            for f in c.report.fields:
                attrs = {"use_case": c.use_case, "field": f.field}
                self._null_rate.set(f.null_rate, attrs)
                self._oor_rate.set(f.out_of_range_rate, attrs)

    def _report(self, use_case: str, window: Window, end: datetime) -> QualityReport:
        n = window.records
        fields = [
            FieldQuality(
                f, window.nulls[f], window.nulls[f] / n, window.out_of_range[f], window.out_of_range[f] / n
            )
            for f in self._fields[use_case]
        ]
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
    """Closes due windows every ``tick`` seconds: their reports, and the fresh windows that
    replace them (with ``state``), go out in one transaction (``commit``) under ``lock``,
    the lock the counting transactions hold, so no batch is counted into a window being
    closed. A failed transaction leaves the windows open: the next tick closes them."""

    def __init__(
        self,
        tracker: QualityTracker,
        commit: Callable[[Sequence[Outgoing]], Awaitable[None]],
        topic: str,
        *,
        state: WindowState | None = None,
        lock: asyncio.Lock | None = None,
        tick: float = 1.0,
    ) -> None:
        self._tracker = tracker
        self._commit = commit
        self._topic = topic
        self._state = state
        self._lock = lock or asyncio.Lock()
        self._tick = tick
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._tick)
            await self.flush(force=self._stopping.is_set())

    async def flush(self, *, force: bool = False) -> list[QualityReport]:
        async with self._lock:
            closing = self._tracker.due(force=force)
            reports = [c.report for c in closing if c.report is not None]
            messages = [
                event_message(
                    self._topic, r.to_proto(), event_id=r.report_id, use_case=r.use_case, key=r.use_case
                )
                for r in reports
            ]
            if self._state is not None:
                # An empty window that restarts needs no record: its state is already empty.
                messages += [
                    self._state.message(c.use_case, c.fresh) for c in closing if c.report is not None
                ]
            if messages:
                try:
                    await self._commit(messages)
                except Exception:  # noqa: BLE001 - the windows stay open; the next tick retries
                    log.exception("could not publish %d quality report(s); retrying", len(reports))
                    return []
            self._tracker.closed(closing)
        return reports

    async def stop(self) -> None:
        self._stopping.set()
