"""libs.bus.lag.Progress and ConsumerLag.stalled: when a consumer group counts as stuck."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from libs.bus import lag as lag_module
from libs.bus.lag import ConsumerLag, Progress

A, B = TopicPartition("records", 0), TopicPartition("records", 1)


def test_offsets_that_do_not_move_with_records_waiting_are_a_stall_after_the_timeout() -> None:
    p = Progress(60)
    p.observe({A: 10, B: 4}, lag=7, now=0)
    p.observe({A: 10, B: 4}, lag=7, now=30)
    assert p.stalled_for(59) is None
    assert p.stalled_for(61) == 61
    assert p.offsets == {A: 10, B: 4}


def test_moving_offsets_are_progress_however_long_the_lag() -> None:
    p = Progress(60)
    for t in range(0, 600, 10):
        p.observe({A: t, B: 4}, lag=500, now=t)  # B idle, A moving: the group is working
    assert p.stalled_for(600) is None


def test_no_lag_is_never_a_stall() -> None:
    p = Progress(60)
    for t in range(0, 600, 10):
        p.observe({A: 10}, lag=0, now=t)
    assert p.stalled_for(600) is None


def test_a_failed_measurement_restarts_the_clock() -> None:
    p = Progress(60)
    p.observe({A: 10}, lag=3, now=0)
    p.lost()  # the broker away: no evidence either way
    p.observe({A: 10}, lag=3, now=50)
    assert p.stalled_for(100) is None
    assert p.stalled_for(111) == 61


def test_a_lag_found_empty_is_no_stall_until_it_grows() -> None:
    p = Progress(60)
    p.observe({A: 10}, lag=3, now=0)
    p.observe({A: 10}, lag=3, now=70)
    assert p.stalled_for(70) == 70
    p.settled()  # nothing readable behind the offsets: commit markers, an aborted transaction
    for t in range(80, 400, 10):
        p.observe({A: 10}, lag=3, now=t)
    assert p.stalled_for(400) is None, "idle, caught up"
    p.observe({A: 10}, lag=50, now=400)  # new records, not read
    assert p.stalled_for(459) is None, "waiting for less than the timeout"
    assert p.stalled_for(461) == 61
    p.observe({A: 30}, lag=33, now=470)  # they are read: the empty lag no longer applies
    p.observe({A: 30}, lag=33, now=480)
    assert p.stalled_for(531) == 61


def test_a_longer_limit_can_be_asked_for() -> None:
    p = Progress(60)
    p.observe({A: 10}, lag=3, now=0)
    p.observe({A: 10}, lag=3, now=100)
    assert p.stalled_for(100) == 100
    assert p.stalled_for(100, after_s=300) is None


class _Probe(ConsumerLag):
    """ConsumerLag with the broker replaced: each refresh observes the next offsets given."""

    def __init__(self, progress: Progress, seen: list[dict[TopicPartition, int]], readable: int) -> None:
        super().__init__("unused:9092", "g", progress=progress)
        self.seen, self.waiting, self.clock = seen, readable, 0.0

    async def refresh(self) -> dict[str, int]:
        assert self.progress is not None
        self.progress.observe(self.seen.pop(0), lag=5, now=self.clock)
        return {"records": 5}

    async def readable(self, offsets: Mapping[TopicPartition, int], timeout_s: float = 3.0) -> int:
        return self.waiting


async def test_a_stall_is_confirmed_on_fresh_offsets_and_on_records_behind_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr(lag_module.time, "monotonic", lambda: clock[0])
    p = Progress(60)
    probe = _Probe(p, [{A: 20}, {A: 20}, {A: 20}], readable=5)
    p.observe({A: 10}, lag=5, now=0)
    clock[0] = probe.clock = 61
    # Committed since the last refresh: the fresh one sees it, no stall.
    assert await probe.stalled() is None
    clock[0] = probe.clock = 100
    assert await probe.stalled() is None, "39 s without a commit"
    clock[0] = probe.clock = 125
    reason = await probe.stalled()
    assert reason is not None and "no offset committed for 64s (limit 60s)" in reason

    quiet = _Probe(Progress(60), [{A: 10}], readable=0)
    assert quiet.progress is not None
    quiet.progress.observe({A: 10}, lag=5, now=0)
    clock[0] = quiet.clock = 70
    assert await quiet.stalled() is None, "only commit markers behind the offsets"
    assert quiet.progress.stalled_for(500) is None, "settled until the lag grows"


async def test_no_evidence_is_no_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lag_module.time, "monotonic", lambda: 70.0)
    p = Progress(60)
    p.observe({A: 10}, lag=5, now=0)

    class Unreachable(ConsumerLag):
        async def refresh(self) -> dict[str, int]:
            raise KafkaConnectionError("broker away")

    assert await Unreachable("unused:9092", "g", progress=p).stalled() is None
    assert p.stalled_for(70) is None, "the clock starts again"
    assert await ConsumerLag("unused:9092", "g", progress=Progress(0)).stalled() is None, "0: off"


class _Offsets:
    def __init__(self, meta: int) -> None:
        self.offset = meta


class _Broker:
    """The admin client's and the end-offset consumer's answers, for refresh."""

    def __init__(self, committed: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> None:
        self.committed, self.ends = committed, ends

    async def list_consumer_group_offsets(self, group: str) -> dict[TopicPartition, _Offsets]:
        return {tp: _Offsets(o) for tp, o in self.committed.items()}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}


async def test_a_member_judges_its_own_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two instances share the group: A is this one's and stuck, B another's and moving.
    clock = [0.0]
    monkeypatch.setattr(lag_module.time, "monotonic", lambda: clock[0])
    broker = _Broker({A: 10, B: 0}, {A: 50, B: 500})
    owned: list[TopicPartition] = [A]
    p = Progress(60)
    lag = ConsumerLag("unused:9092", "g", progress=p, owned=lambda: owned)
    lag._admin = lag._consumer = broker  # type: ignore[assignment]
    for t in range(0, 130, 10):
        clock[0] = t
        broker.committed[B] = t * 3
        assert sum((await lag.refresh()).values()) == 40 + 500 - t * 3, "the gauge is the group's"
    assert p.offsets == {A: 10}
    assert p.stalled_for(120) == 120, "B's progress hides nothing"
    owned = []  # no partitions (yet): the whole group is judged, and it moves
    await lag.refresh()
    assert p.stalled_for(120) is None
