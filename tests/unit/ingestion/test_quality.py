"""Quality windows: volume, null and out-of-range rates, rejections by code, window closing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from aifactory.ingestion.v1 import events_pb2
from libs.usecase import UseCase
from services.ingestion.publisher import Outgoing
from services.ingestion.quality import QualityReporter, QualityTracker, Window, WindowState
from services.ingestion.records import Outcome
from services.ingestion.violations import ENUM, PARSE, RANGE, REQUIRED, Violation
from tests.unit.ingestion.conftest import NOW


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def outcomes() -> list[Outcome]:
    return [
        Outcome("a", [], {"age": 30}, "e", NOW, ["approved"]),
        Outcome("b", [], {"age": 30}, "e", NOW, ["approved", "gender"]),
        Outcome(
            "c",
            [
                Violation("age", RANGE, "x"),
                Violation("elevel", ENUM, "y"),
                Violation("salary", REQUIRED, "z"),
            ],
            nulls=["approved", "salary"],
        ),
        Outcome("d", [Violation("", PARSE, "not json")]),
    ]


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict, float]]]:
    found: dict[str, list[tuple[dict, float]]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                found[m.name] = [(dict(p.attributes), p.value) for p in m.data.data_points]
    return found


def test_window_report_and_metrics(loan: UseCase) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    clock = Clock()
    tracker = QualityTracker({"loan_approval": loan}, meter, window_seconds=10, clock=clock)
    tracker.observe("loan_approval", outcomes())
    assert tracker.close_due() == []  # not yet due
    clock.now += timedelta(seconds=10)
    (report,) = tracker.close_due()
    assert (report.record_count, report.accepted_count, report.rejected_count) == (4, 2, 2)
    assert report.rejections_by_code == {RANGE: 1, ENUM: 1, REQUIRED: 1, PARSE: 1}
    by_field = {f.field: f for f in report.fields}
    assert by_field["approved"].null_count == 3 and by_field["approved"].null_rate == 0.75
    assert by_field["age"].out_of_range_count == 1 and by_field["elevel"].out_of_range_rate == 0.25
    assert by_field["salary"].out_of_range_count == 0 and by_field["salary"].null_count == 1
    assert (report.start, report.end) == (NOW, NOW + timedelta(seconds=10))
    proto = report.to_proto()
    assert proto.record_count == 4 and proto.rejections_by_code["parse"] == 1 and len(proto.fields) == 14
    points = metric_points(reader)
    assert ({"use_case": "loan_approval", "outcome": "accepted"}, 2) in points["aif.ingestion.records"]
    assert ({"use_case": "loan_approval", "code": "range"}, 1) in points["aif.ingestion.rejections"]
    assert ({"use_case": "loan_approval", "field": "approved"}, 0.75) in points[
        "aif.ingestion.field.null_rate"
    ]
    assert ({"use_case": "loan_approval"}, 4) in points["aif.ingestion.window.records"]
    clock.now += timedelta(seconds=10)
    assert tracker.close_due() == []  # an empty window makes no report


def test_window_closes_on_record_count(loan: UseCase) -> None:
    meter = MeterProvider().get_meter("t")
    tracker = QualityTracker(
        {"loan_approval": loan}, meter, window_seconds=3600, window_records=4, clock=Clock()
    )
    tracker.observe("loan_approval", outcomes()[:3])
    assert tracker.close_due() == []
    tracker.observe("loan_approval", outcomes()[3:])
    assert [r.record_count for r in tracker.close_due()] == [4]


async def test_reporter_publishes_reports_and_keeps_the_window_open_when_it_cannot(loan: UseCase) -> None:
    tracker = QualityTracker({"loan_approval": loan}, MeterProvider().get_meter("t"), clock=Clock())
    sent: list[list[Outgoing]] = []
    failures = [ConnectionError("broker down")]

    async def commit(messages: Sequence[Outgoing]) -> None:
        if failures:
            raise failures.pop()
        sent.append(list(messages))

    state = WindowState("aif.ingestion.quality-state", "ingestion-a")
    reporter = QualityReporter(tracker, commit, "aif.quality", state=state)
    tracker.observe("loan_approval", outcomes())
    assert await reporter.flush(force=True) == []  # the failure is logged, not raised...
    tracker.observe("loan_approval", outcomes())
    (report,) = await reporter.flush(force=True)  # ...and nothing counted is lost
    assert report.record_count == 8
    (report_msg, state_msg), *_ = sent
    assert (report_msg.topic, report_msg.key) == ("aif.quality", b"loan_approval")
    headers = dict(report_msg.headers)
    assert headers["aif-event-id"] == report.report_id.encode()
    assert events_pb2.QualityReport.FromString(report_msg.value).record_count == 8
    # The fresh window replaces the closed one in the same transaction.
    assert (state_msg.topic, state_msg.key) == (state.topic, b"ingestion-a/loan_approval")
    assert Window.from_json(state_msg.value).records == 0


def test_a_counted_batch_changes_nothing_until_applied_and_windows_round_trip(loan: UseCase) -> None:
    tracker = QualityTracker({"loan_approval": loan}, MeterProvider().get_meter("t"), clock=Clock())
    counted = tracker.count("loan_approval", outcomes())
    assert counted.window.records == 4
    assert tracker.count("loan_approval", outcomes()).window.records == 4  # the aborted one left no trace
    tracker.apply([counted])
    window = tracker.count("loan_approval", []).window
    assert window.records == 4 and Window.from_json(window.to_json()) == window

    restarted = QualityTracker({"loan_approval": loan}, MeterProvider().get_meter("t"), clock=Clock())
    restarted.resume({"loan_approval": Window.from_json(window.to_json()), "retired_case": window})
    restarted.observe("loan_approval", outcomes())
    (report,) = restarted.close_due(force=True)
    assert report.record_count == 8 and report.start == window.start
