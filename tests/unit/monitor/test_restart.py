"""Reports, alerts and alarm state in the store; a restart resumes and neither loses nor doubles an alarm."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from libs.bus import Event, EventMeta, Outgoing
from libs.bus.outbox import OutboxRelay
from libs.errors import InvalidArgument, NotFound, Unavailable
from libs.usecase import UnknownUseCase
from services.monitor import convert
from services.monitor.consumers import MonitorHandler
from services.monitor.core import Monitor, MonitorCore
from services.monitor.domain import DriftAlarm, Effects, RollbackRequest, VersionKey
from services.monitor.journal import Entry
from services.monitor.references import StaticReferences
from services.monitor.store import MonitorStore
from tests.unit.monitor import loanstream
from tests.unit.monitor.helpers import V1

NOW = datetime(2026, 2, 1, tzinfo=UTC)
UC = loanstream.loan_usecase()


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.fail = False

    async def publish_many(self, items: Sequence[Outgoing]) -> list[object]:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent += list(items)
        return []


def _feed(core: MonitorCore, store: MonitorStore, items: list[loanstream.Timed]) -> Effects:
    total = Effects()
    for item in items:
        event = item.event
        if isinstance(event, gateway_events.PredictionLogged):
            effects = core.on_prediction(convert.prediction_of(event, UC, NOW))
        else:
            effects = core.on_outcome(convert.outcome_of(event, UC, NOW))
        if effects:
            store.commit(effects, NOW)
            total.merge(effects)
    return total


@pytest.fixture(scope="module")
def stream() -> list[loanstream.Timed]:
    return loanstream.events(loanstream.rule_scorer(), n=2600, drift_at=1500)


def test_a_restarted_monitor_resumes_its_episode_and_does_not_alarm_again(
    stream: list[loanstream.Timed], tmp_path: Path
) -> None:
    store = MonitorStore.from_url(f"sqlite:///{tmp_path / 'monitor.db'}")
    core = MonitorCore({UC.name: UC})
    cut = next(i for i, t in enumerate(stream) if t.index == 1800)
    before = _feed(core, store, stream[:cut])
    (alarm,) = before.alarms
    assert alarm.report_id.startswith("loan_approval.v1.cusum.")

    restarted = MonitorCore({UC.name: UC}, saved=store.states())  # a new process, the same database
    after = _feed(restarted, store, stream[cut:])
    assert not after.alarms
    tracker = restarted.trackers[V1]
    assert tracker.episode.open and tracker.episode.report_id == alarm.report_id
    assert tracker.detector.calibrated and tracker.suppressed > 0  # it kept alarming, inside the episode
    assert [key for key, _ in store.pending()] == [alarm.report_id]
    (alert,) = store.list_alerts(use_case=UC.name)
    assert alert.resolved_at is None and alert.report_id == alarm.report_id


async def test_the_outbox_publishes_each_event_once_across_failures_and_restarts(tmp_path: Path) -> None:
    store = MonitorStore.from_url(
        f"sqlite:///{tmp_path / 'monitor.db'}", drift_topic="drift", rollback_topic="rollback"
    )
    effects = Effects(
        alarms=[DriftAlarm("r1", V1, (), NOW)],
        rollbacks=[RollbackRequest("rb1", V1, "champion", "worse", ("r1",), NOW)],
    )
    publisher = FakePublisher()
    monitor = Monitor(MonitorCore({UC.name: UC}), store, StaticReferences())
    relay = OutboxRelay(store, publisher, name="test", before_flush=monitor.save)  # type: ignore[arg-type]
    publisher.fail = True
    await monitor.apply(effects)  # committed; the broker is down
    with pytest.raises(ConnectionError):
        await relay.flush()
    store.commit(effects, NOW)  # the same effects again (a replayed event): no second outbox entry
    publisher.fail = False
    assert await relay.flush() == 2 and await relay.flush() == 0
    assert [(o.topic, o.event_id, o.key) for o in publisher.sent] == [
        ("drift", "r1", UC.name),
        ("rollback", "rb1", UC.name),
    ]
    assert isinstance(publisher.sent[0].event, monitor_events.DriftDetected)
    assert publisher.sent[1].event.evidence_ids == ["r1"]
    again = OutboxRelay(store, publisher, name="test")  # type: ignore[arg-type]
    assert await again.flush() == 0


def test_reports_are_idempotent_filtered_and_paged(stream: list[loanstream.Timed], tmp_path: Path) -> None:
    store = MonitorStore.from_url(f"sqlite:///{tmp_path / 'monitor.db'}")
    core = MonitorCore({UC.name: UC})
    core.set_reference(V1, loanstream.reference(loanstream.rule_scorer()))
    effects = _feed(core, store, stream)
    store.commit(effects, NOW)  # everything again: nothing doubled
    reports = store.list_reports(use_case=UC.name, limit=500)
    assert len(reports) == len({r.report_id for r in effects.reports}) == len(effects.reports)
    (detected,) = store.list_reports(use_case=UC.name, drift_only=True)
    assert detected.drift_detected and detected.evidence[0].statistic == "cusum_llr"
    assert store.get_report(detected.report_id) == detected
    page = store.list_reports(model=VersionKey("", UC.name, 1), limit=3, offset=3)
    assert [r.report_id for r in page] == [r.report_id for r in reports[3:6]]
    assert store.list_reports(model=VersionKey("", UC.name, 9)) == []
    with pytest.raises(NotFound):
        store.get_report("nope")


async def test_bad_events_are_refused_naming_the_field_and_references_are_retried(tmp_path: Path) -> None:
    class Flaky(StaticReferences):
        calls = 0

        async def reference(self, key: VersionKey) -> dict | None:  # type: ignore[type-arg]
            Flaky.calls += 1
            raise Unavailable("registry down")

    store = MonitorStore.from_url(f"sqlite:///{tmp_path / 'monitor.db'}")
    handler = MonitorHandler(Monitor(MonitorCore({UC.name: UC}), store, Flaky(), reference_retry_s=3600))

    def event(payload: object) -> Event:  # type: ignore[type-arg]
        meta = EventMeta.new(type(payload).DESCRIPTOR.full_name, "v1", UC.name, "test", None)  # type: ignore[attr-defined]
        return Event(meta, payload, "t", 0, 0, None)  # type: ignore[arg-type]

    good = next(
        t.event
        for t in loanstream.events(loanstream.rule_scorer(), n=3)
        if isinstance(t.event, gateway_events.PredictionLogged)
    )
    await handler.handle(event(good))
    second = gateway_events.PredictionLogged()
    second.CopyFrom(good)
    second.prediction_id = "other"
    await handler.handle(event(second))
    assert Flaky.calls == 1  # not asked again before reference_retry_s
    bad = gateway_events.PredictionLogged()
    bad.CopyFrom(good)
    bad.prediction_id = ""
    with pytest.raises(InvalidArgument) as err:
        await handler.handle(event(bad))
    assert err.value.field == "prediction_id"
    unknown = gateway_events.FeedbackRecorded(prediction_id="x", use_case=UC.name)
    unknown.outcome.string_value = "maybe"
    with pytest.raises(InvalidArgument) as err:
        await handler.handle(event(unknown))
    assert err.value.field == "outcome" and "maybe" in err.value.message
    other = gateway_events.FeedbackRecorded(prediction_id="x", use_case="nope")
    with pytest.raises(UnknownUseCase) as unknown_err:  # a NotFound: dead-lettered like any bad event
        await handler.handle(event(other))
    assert unknown_err.value.field == "use_case" and unknown_err.value.name == "nope"


async def test_a_database_outage_keeps_the_effects_until_the_next_commit(tmp_path: Path) -> None:
    class Flaky(MonitorStore):
        down = True

        def commit(self, effects: Effects, now: datetime, journal: Sequence[Entry] = ()) -> None:
            if self.down:  # what the store raises for an OperationalError
                raise Unavailable("database unavailable (monitor effects): database is locked")
            super().commit(effects, now, journal)

    store = Flaky.from_url(f"sqlite:///{tmp_path / 'monitor.db'}")
    monitor = Monitor(MonitorCore({UC.name: UC}), store, StaticReferences())
    await monitor.apply(Effects(alarms=[DriftAlarm("r1", V1, (), NOW)], states={"k": {"n": 1}}))
    assert store.pending() == []
    store.down = False
    await monitor.apply(Effects(states={"k": {"n": 2}}))
    assert [key for key, _ in store.pending()] == ["r1"] and store.states() == {"k": {"n": 2}}
