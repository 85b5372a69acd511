"""Debounce, cooldown and budget: an alert storm trains once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from libs.usecase.model import RetrainingSpec
from services.trainer.scheduler import Action, RetrainScheduler

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def make(debounce: float = 10, cooldown: float = 60, budget: int = 3) -> tuple[RetrainScheduler, Clock]:
    clock = Clock()
    spec = RetrainingSpec(
        debounce=timedelta(seconds=debounce), cooldown=timedelta(seconds=cooldown), max_per_day=budget
    )
    return RetrainScheduler(lambda _uc: spec, clock), clock


def run_due(s: RetrainScheduler) -> list[str]:
    ran = []
    for uc, job, decision in s.due():
        if decision.action == Action.RUN:
            s.started(uc, job)
            s.finished(uc, job)
            ran.append(job)
    return ran


def test_a_storm_of_drift_alarms_trains_once() -> None:
    s, clock = make()
    decisions = []
    for i in range(200):
        decisions.append(s.request("loan", f"drift-{i}", manual=False))
        clock.advance(seconds=0.04)  # 200 alarms in 8 s, inside the 10 s debounce
    assert decisions[0].action == Action.DEFER
    assert all(d.action == Action.SKIP and d.into == "drift-0" for d in decisions[1:])
    assert s.due() == []  # still debouncing
    clock.advance(seconds=3)
    assert run_due(s) == ["drift-0"]
    # The storm goes on after the training: cooldown swallows it.
    for i in range(200, 300):
        d = s.request("loan", f"drift-{i}", manual=False)
        assert d.action == Action.SKIP and "cooldown" in d.reason
        clock.advance(seconds=0.5)
    assert run_due(s) == []


def test_after_the_cooldown_a_new_alarm_trains_again() -> None:
    s, clock = make(debounce=5, cooldown=60)
    s.request("loan", "a", manual=False)
    clock.advance(seconds=5)
    assert run_due(s) == ["a"]
    clock.advance(seconds=61)
    assert s.request("loan", "b", manual=False).action == Action.DEFER
    clock.advance(seconds=5)
    assert run_due(s) == ["b"]


def test_budget_caps_trainings_per_rolling_day() -> None:
    s, clock = make(debounce=0, cooldown=0, budget=2)
    ran = []
    for i in range(10):
        s.request("loan", f"r{i}", manual=False)
        ran += run_due(s)
        clock.advance(hours=1)
    assert ran == ["r0", "r1"]
    d = s.request("loan", "late", manual=False)
    assert d.action == Action.SKIP and "budget" in d.reason
    clock.advance(hours=15)  # r0 started 24 h ago now
    assert s.request("loan", "next-day", manual=False).action == Action.DEFER


def test_manual_bypasses_debounce_and_cooldown_but_not_budget() -> None:
    s, clock = make(debounce=30, cooldown=600, budget=2)
    s.request("loan", "auto", manual=False)
    clock.advance(seconds=30)
    assert run_due(s) == ["auto"]
    d = s.request("loan", "m1", manual=True)  # inside the cooldown: runs anyway
    assert d.action == Action.RUN
    s.started("loan", "m1")
    s.finished("loan", "m1")
    d = s.request("loan", "m2", manual=True)
    assert d.action == Action.SKIP and "budget" in d.reason


def test_queued_manual_requests_count_against_the_budget() -> None:
    s, _ = make(budget=2)
    assert [s.request("loan", f"m{i}", manual=True).action for i in range(3)] == [
        Action.RUN,
        Action.RUN,
        Action.SKIP,
    ]


def test_debounced_request_is_skipped_if_a_training_runs_when_it_falls_due() -> None:
    s, clock = make(debounce=10, cooldown=60)
    s.request("loan", "auto", manual=False)
    s.request("loan", "manual", manual=True)
    s.started("loan", "manual")
    clock.advance(seconds=11)
    [(uc, job, d)] = s.due()
    assert job == "auto" and d.action == Action.SKIP and "in progress" in d.reason


def test_use_cases_are_independent() -> None:
    s, _ = make()
    assert s.request("loan", "a", manual=False).action == Action.DEFER
    assert s.request("segments", "b", manual=False).action == Action.DEFER
    assert s.next_due() is not None


def test_restore_after_restart_keeps_budget_cooldown_and_pending() -> None:
    s, clock = make(debounce=10, cooldown=60, budget=2)
    t = clock.now
    s.restore("loan", "old", started_at=t - timedelta(hours=2), finished_at=t - timedelta(hours=2))
    s.restore("loan", "recent", started_at=t - timedelta(seconds=30), finished_at=t - timedelta(seconds=20))
    d = s.request("loan", "new", manual=False)
    assert d.action == Action.SKIP and "cooldown" in d.reason
    clock.advance(seconds=60)
    assert "budget" in s.request("loan", "new2", manual=False).reason
    s2, _ = make()
    s2.restore("loan", "waiting", due_at=t + timedelta(seconds=5))
    assert s2.request("loan", "x", manual=False).into == "waiting"
    # A job re-run after a restart counts once against the budget.
    s3, _ = make(budget=2)
    s3.restore("loan", "j", started_at=t, queued=True)
    s3.started("loan", "j")
    s3.finished("loan", "j")
    assert s3.request("loan", "m", manual=True).action == Action.RUN


def test_evidence_about_the_newest_model_waits_out_the_cooldown() -> None:
    s, clock = make(debounce=5, cooldown=60)
    s.request("loan", "a", manual=True)
    s.started("loan", "a")
    s.finished("loan", "a")  # v1 trained; the cooldown runs until +60 s
    clock.advance(seconds=20)
    d = s.request("loan", "drift-v1", manual=False, fresh_evidence=True)
    assert d.action == Action.DEFER and d.due_at == clock.now + timedelta(seconds=40)
    assert s.request("loan", "drift-v1-again", manual=False, fresh_evidence=True).into == "drift-v1"
    clock.advance(seconds=39)
    assert run_due(s) == []
    clock.advance(seconds=1)
    assert run_due(s) == ["drift-v1"]
