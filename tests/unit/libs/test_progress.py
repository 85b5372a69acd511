"""libs.bus.lag.Progress: when a consumer group counts as stuck."""

from __future__ import annotations

from aiokafka import TopicPartition

from libs.bus.lag import Progress

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
