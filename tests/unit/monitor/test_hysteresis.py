"""Minimum sample sizes and hysteresis: a drift alarm neither flaps nor fires on too little data."""

from __future__ import annotations

import numpy as np

from libs.reference import numeric_summary
from services.monitor.core import MonitorCore
from services.monitor.domain import Effects, EvidenceKind
from services.monitor.hysteresis import Hysteresis
from tests.unit.monitor.helpers import V1, prediction, spec

WINDOW = 100


def test_hysteresis_needs_consecutive_windows_both_ways() -> None:
    h = Hysteresis(2)
    assert [h.update(d) for d in (True, False, True, False, True)] == [None] * 5 and not h.active
    assert h.update(True) is True and h.active
    assert h.update(False) is None and h.update(True) is None and h.update(False) is None
    assert h.update(False) is False and not h.active


def _core() -> tuple[MonitorCore, np.random.Generator]:
    uc = spec(window=WINDOW, min_samples=50, hysteresis=2)
    core = MonitorCore({uc.name: uc})
    rng = np.random.default_rng(0)
    core.set_reference(V1, {"features": {"salary": numeric_summary(rng.normal(50_000, 10_000, 5000))}})
    return core, rng


def _window(
    core: MonitorCore, rng: np.random.Generator, start: int, shift: float, missing: float = 0.0
) -> Effects:
    effects = Effects()
    for i in range(start, start + WINDOW):
        salary = None if rng.random() < missing else float(rng.normal(50_000 + shift, 10_000))
        effects.merge(core.on_prediction(prediction(i, features={"salary": salary})))
    return effects


def test_alternating_windows_never_alarm_and_two_in_a_row_alarm_once() -> None:
    core, rng = _core()
    start = 0
    runs: list[Effects] = []
    for shifted in (False, True, False, True, False, True, False):
        runs.append(_window(core, rng, start, 30_000 if shifted else 0))
        start += WINDOW
    assert all(len(r.reports) == 1 for r in runs)
    assert any(e.drifted for e in runs[1].reports[0].evidence)  # each shifted window does drift...
    assert not any(r.alarms for r in runs)  # ...but never twice in a row: no alarm

    first, second, third = (_window(core, rng, start + k * WINDOW, 30_000) for k in range(3))
    assert not first.alarms
    (alarm,) = second.alarms
    assert second.reports[0].drift_detected and second.reports[0].report_id == alarm.report_id
    assert {(e.feature, e.statistic) for e in alarm.evidence} == {("salary", "psi"), ("salary", "ks")}
    psi = next(e for e in alarm.evidence if e.statistic == "psi")
    assert psi.kind == EvidenceKind.FEATURE and psi.value > psi.threshold == 0.2 and psi.sample_size == WINDOW
    assert psi.window_start < psi.window_end and alarm.model == V1
    (alert,) = second.alerts
    assert alert.kind == "drift" and alert.report_id == alarm.report_id
    assert not third.alarms  # the episode is open: at most one alarm

    start += 3 * WINDOW
    calm = [_window(core, rng, start + k * WINDOW, 0) for k in range(2)]
    assert not calm[0].resolved and alert.alert_id in calm[1].resolved  # cleared after 2 windows under
    again = [_window(core, rng, start + (2 + k) * WINDOW, 30_000) for k in range(2)]
    assert not again[0].alarms and len(again[1].alarms) == 1  # a new episode, a new alarm
    assert again[1].alarms[0].report_id != alarm.report_id


def test_a_feature_below_min_samples_is_not_tested() -> None:
    core, rng = _core()
    for k in range(4):
        effects = _window(core, rng, k * WINDOW, 30_000, missing=0.7)  # ~30 values < min_samples 50
        assert effects.reports and not effects.reports[0].evidence and not effects.alarms
    effects = _window(core, rng, 4 * WINDOW, 30_000, missing=0.2)
    evidence = effects.reports[0].evidence
    assert evidence and all(50 <= e.sample_size < WINDOW for e in evidence)  # enough values now: tested


def test_windows_hold_at_least_min_samples() -> None:
    uc = spec(window=50, min_samples=120)
    core = MonitorCore({uc.name: uc})
    core.set_reference(V1, {"features": {"salary": numeric_summary(np.linspace(0, 1, 100))}})
    reports = [
        r for i in range(240) for r in core.on_prediction(prediction(i, features={"salary": 0.5})).reports
    ]
    assert len(reports) == 2 and {e.sample_size for r in reports for e in r.evidence} == {120}


def test_a_drift_that_outlives_its_alarm_is_raised_again_while_the_same_champion_serves() -> None:
    # The retraining the first alarm asked for produced nothing that was promoted (its
    # candidate failed the gates): the loop would wait forever on an open episode.
    uc = spec(window=WINDOW, min_samples=50, hysteresis=2, realarm_windows=3)
    core = MonitorCore({uc.name: uc})
    rng = np.random.default_rng(1)
    core.set_reference(V1, {"features": {"salary": numeric_summary(rng.normal(50_000, 10_000, 5000))}})
    runs = [_window(core, rng, k * WINDOW, 30_000) for k in range(9)]
    alarmed = [k for k, r in enumerate(runs) if r.alarms]
    assert alarmed == [1, 4, 7]  # raised at the 2nd window, then every 3 windows it stands
    ids = [runs[k].alarms[0].report_id for k in alarmed]
    assert len(set(ids)) == 3  # each a new report: the trainer makes a new job of each
    first_alert = runs[1].alerts[0].alert_id
    assert first_alert in runs[4].resolved  # the old episode ends where the new one starts

    calm = [_window(core, rng, (9 + k) * WINDOW, 0) for k in range(6)]
    assert not any(r.alarms for r in calm)  # a drift that cleared is not raised again


def test_no_realarm_for_a_version_that_no_longer_serves_as_champion() -> None:
    uc = spec(window=WINDOW, min_samples=50, hysteresis=2, realarm_windows=2)
    core = MonitorCore({uc.name: uc})
    rng = np.random.default_rng(2)
    core.set_reference(V1, {"features": {"salary": numeric_summary(rng.normal(50_000, 10_000, 5000))}})
    runs = [_window(core, rng, k * WINDOW, 30_000) for k in range(2)]
    assert runs[1].alarms
    effects = Effects()
    for i in range(2 * WINDOW, 8 * WINDOW):
        salary = float(rng.normal(80_000, 10_000))
        effects.merge(core.on_prediction(prediction(i, features={"salary": salary}, alias="challenger")))
    assert not effects.alarms
