"""A drift report becomes a retraining request on the data after the change point."""

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.trainer.v1 import events_pb2 as trainer_events
from services.trainer.convert import CHANGE_POINT_STATISTIC, requested_from_drift


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def test_change_point_becomes_the_window_start() -> None:
    change = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    event = monitor_events.DriftDetected(
        report_id="r1",
        use_case="loan_approval",
        evidence=[
            monitor_events.DriftEvidence(
                feature="salary", statistic="psi", window_start=ts(datetime(2026, 1, 1, tzinfo=UTC))
            ),
            monitor_events.DriftEvidence(
                feature="error", statistic=CHANGE_POINT_STATISTIC, window_start=ts(change)
            ),
        ],
    )
    request = requested_from_drift(event, use_case="loan_approval", producer="monitor", event_id="e1")
    assert request.reason == trainer_events.TRAINING_REASON_DRIFT and request.drift_report_id == "r1"
    assert request.window.start.ToDatetime(tzinfo=UTC) == change
    assert request.window.end.ToDatetime(tzinfo=UTC).year == 9999


def test_without_a_change_point_the_spec_window_applies() -> None:
    event = monitor_events.DriftDetected(
        report_id="r2",
        use_case="loan_approval",
        evidence=[monitor_events.DriftEvidence(feature="salary", statistic="psi")],
    )
    request = requested_from_drift(event, use_case="loan_approval", producer="monitor", event_id="e2")
    assert not request.HasField("window")
