"""Nothing the monitor holds in memory is lost with its process.

A monitor reads every prediction of a drifting stream (they wait for their outcomes) and
part of the outcomes, then its process dies without a goodbye (no final checkpoint). A
new one on the same database resumes from the checkpoint and the journal, skips what
Kafka delivers again, and, given the other outcomes, ends exactly where a monitor that
never crashed ends: every join once, the same reports, the one drift alarm.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from aifactory.gateway.v1 import events_pb2 as gateway_events
from services.monitor.consumers import MonitorHandler
from services.monitor.core import Monitor, MonitorCore
from services.monitor.references import StaticReferences
from services.monitor.store import MonitorStore
from tests.unit.monitor import loanstream
from tests.unit.monitor.helpers import V1

UC = loanstream.loan_usecase()
SCORER = loanstream.rule_scorer()
N, DRIFT_AT, CRASH_AT = 2600, 1500, 1510  # the crash comes after the onset, before the alarm


def _event_id(t: loanstream.Timed) -> str:
    kind = "p" if isinstance(t.event, gateway_events.PredictionLogged) else "f"
    return f"{kind}:{t.event.prediction_id}"


class Feeder:
    def __init__(self, tmp: Path, name: str, *, checkpoint_every: int = 5000) -> None:
        self.store = MonitorStore.from_url(f"sqlite:///{tmp / name}")
        self.checkpoint_every = checkpoint_every
        self.monitor = self.start()

    async def __aenter__(self) -> Feeder:
        await self.monitor.resume(*self.store.recovery())  # as the service starts
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.store.close()

    def start(self) -> Monitor:
        core = MonitorCore({UC.name: UC}, saved=self.store.states())
        references = StaticReferences({V1: loanstream.reference(SCORER)})
        return Monitor(core, self.store, references, checkpoint_every=self.checkpoint_every)

    async def restart(self) -> None:
        """A new process on the same database (the old one died: no final checkpoint)."""
        self.monitor = self.start()
        await self.monitor.resume(*self.store.recovery())

    async def feed(self, items: list[loanstream.Timed]) -> None:
        handler = MonitorHandler(self.monitor)
        for t in items:
            if isinstance(t.event, gateway_events.PredictionLogged):
                await handler.prediction(t.event, UC.name, _event_id(t))
            else:
                await handler.feedback(t.event, UC.name, _event_id(t))

    def reports(self) -> list[str]:
        return sorted(r.report_id for r in self.store.list_reports(use_case=UC.name, limit=1000))


@pytest.fixture(scope="module")
def stream() -> tuple[list[loanstream.Timed], list[loanstream.Timed]]:
    items = loanstream.events(SCORER, n=N, drift_at=DRIFT_AT)
    predictions = [t for t in items if isinstance(t.event, gateway_events.PredictionLogged)]
    outcomes = [t for t in items if isinstance(t.event, gateway_events.FeedbackRecorded)]
    return predictions, outcomes


async def test_a_killed_monitor_loses_no_join_and_still_detects_the_drift(
    stream: tuple[list[loanstream.Timed], list[loanstream.Timed]], tmp_path: Path
) -> None:
    predictions, outcomes = stream
    reference = await Feeder(tmp_path, "reference.db").__aenter__()
    await reference.feed(predictions)
    await reference.feed(outcomes)
    (alarm,) = [key for key, _ in reference.store.pending()]

    # Checkpoints: at start, then as many entries as joins wait (about the middle).
    crashed = await Feeder(tmp_path, "crashed.db", checkpoint_every=700).__aenter__()
    await crashed.feed(predictions)  # all of them wait for their outcome
    before = [t for t in outcomes if t.index < CRASH_AT]
    await crashed.feed(before)
    assert crashed.store.pending() == []  # no alarm yet
    assert crashed.monitor.core.joiners[UC.name].waiting == (N - CRASH_AT, 0)
    checkpoint, journal = crashed.store.recovery()
    assert checkpoint is not None  # the one taken at start, at least
    assert 0 < len(journal) < N + CRASH_AT  # the events since the last checkpoint

    await crashed.restart()
    joiner = crashed.monitor.core.joiners[UC.name]
    assert joiner.waiting == (N - CRASH_AT, 0) and joiner.counts.joined == CRASH_AT
    # Kafka delivers again what the dead process had handled but not committed: skipped.
    await crashed.feed(before[-300:])
    assert crashed.monitor.redelivered == 300 and joiner.counts.duplicates == 0
    await crashed.feed([t for t in outcomes if t.index >= CRASH_AT])

    expected = reference.monitor.core.joiners[UC.name].counts
    assert joiner.counts == expected and expected.joined == N and joiner.waiting == (0, 0)
    assert [key for key, _ in crashed.store.pending()] == [alarm]  # the drift, detected once
    assert crashed.reports() == reference.reports(), set(crashed.reports()) ^ set(reference.reports())
    tracker, same = crashed.monitor.core.trackers[V1], reference.monitor.core.trackers[V1]
    assert tracker.state() == same.state()


async def test_a_prediction_logged_twice_is_counted_once(
    stream: tuple[list[loanstream.Timed], list[loanstream.Timed]], tmp_path: Path
) -> None:
    predictions, _ = stream
    feeder = await Feeder(tmp_path, "twice.db").__aenter__()
    await feeder.feed(predictions[:100])
    # A gateway replaying its log re-sends predictions under new event ids.
    handler = MonitorHandler(feeder.monitor)
    for t in predictions[:50]:
        await handler.prediction(t.event, UC.name, f"again:{t.event.prediction_id}")
    joiner = feeder.monitor.core.joiners[UC.name]
    assert joiner.waiting == (100, 0) and joiner.counts.duplicates == 50
    assert len(feeder.monitor.core.trackers[V1].window) == 100


async def test_states_saved_before_the_journal_existed_survive_two_restarts(
    stream: tuple[list[loanstream.Timed], list[loanstream.Timed]], tmp_path: Path
) -> None:
    predictions, outcomes = stream
    feeder = await Feeder(tmp_path, "old.db").__aenter__()
    await feeder.feed(predictions)
    await feeder.feed(outcomes)  # the drift episode is open
    with feeder.store._db.write() as s:  # a database from before the journal: states only
        s.execute(text("DELETE FROM monitor_checkpoint"))
        s.execute(text("DELETE FROM monitor_journal"))
    for _ in range(2):  # the first start checkpoints; the second starts from that checkpoint
        await feeder.restart()
    tracker = feeder.monitor.core.tracker(V1)
    assert tracker.episode.open and tracker.detector.calibrated
