"""After a promotion: roll back when the new champion is clearly worse than the previous one was."""

from __future__ import annotations

import random

from services.monitor.core import MonitorCore
from services.monitor.domain import AliasKind, AliasMove, Effects, VersionKey
from services.monitor.quality import rollback_verdict
from services.monitor.tracker import id_stem
from tests.unit.monitor.helpers import V1, V2, at, outcome, prediction, spec

UC = spec(window=200, min_samples=200, hysteresis=2)


def test_rollback_verdict_in_metric_units() -> None:
    assert rollback_verdict("auc", before=0.90, after=0.80, margin=0.05).worse
    assert not rollback_verdict("auc", before=0.90, after=0.87, margin=0.05).worse
    assert not rollback_verdict("auc", before=0.80, after=0.95, margin=0.05).worse
    mae = rollback_verdict("mae", before=1.0, after=1.2, margin=0.1)
    assert mae.worse and round(mae.loss, 6) == 0.2


def _serve(core: MonitorCore, model: VersionKey, start: int, n: int, flip: float, seed: int) -> Effects:
    rng = random.Random(seed)
    effects = Effects()
    for i in range(start, start + n):
        y = i % 2
        good = rng.random() >= flip
        score = (0.8 if y else 0.2) if good else (0.2 if y else 0.8)
        effects.merge(core.on_prediction(prediction(i, model=model, score=score)))
        effects.merge(core.on_outcome(outcome(i, y, seconds=i + 30)))
    return effects


def _promote(core: MonitorCore, old: int, new: int, seconds: float) -> Effects:
    return core.on_alias(
        AliasMove(UC.name, UC.name, "champion", new, old, AliasKind.PROMOTE, at(seconds), "e1")
    )


def test_a_worse_new_champion_is_rolled_back_once() -> None:
    core = MonitorCore({UC.name: UC})
    _serve(core, V1, 0, 600, flip=0.05, seed=1)
    promoted = _promote(core, 1, 2, 600)
    assert "watch:loan_approval/loan_approval/v2" in promoted.states
    assert _promote(core, 1, 2, 600).states == {}  # the same change again: nothing new
    first = _serve(core, V2, 600, 200, flip=0.35, seed=2)
    assert not first.rollbacks  # one window worse: not yet (hysteresis)
    second = _serve(core, V2, 800, 200, flip=0.35, seed=3)
    (request,) = second.rollbacks
    assert request.model == V2 and request.alias == "champion"
    assert request.request_id == "rollback.loan_approval.v2"
    assert "auc" in request.reason and request.evidence_ids == ("loan_approval.v2.quality.2",)
    assert [a.kind for a in second.alerts if a.kind == "rollback"] == ["rollback"]
    later = _serve(core, V2, 1000, 600, flip=0.35, seed=4)
    assert not later.rollbacks
    assert core.watches[(UC.name, UC.name, 2)].state == "rolled_back"


def test_a_champion_as_good_as_before_is_kept() -> None:
    core = MonitorCore({UC.name: UC})
    _serve(core, V1, 0, 600, flip=0.20, seed=1)  # the previous champion was mediocre
    _promote(core, 1, 2, 600)
    effects = _serve(core, V2, 600, 1000, flip=0.05, seed=2)
    assert not effects.rollbacks and core.watches[(UC.name, UC.name, 2)].state == "kept"


def test_a_first_promotion_or_a_rollback_starts_no_watch() -> None:
    core = MonitorCore({UC.name: UC})
    first = core.on_alias(AliasMove(UC.name, UC.name, "champion", 1, 0, AliasKind.PROMOTE, at(0)))
    assert list(first.states) == ["champion:loan_approval/loan_approval"]
    core.on_alias(AliasMove(UC.name, UC.name, "champion", 1, 2, AliasKind.ROLLBACK, at(1)))
    core.on_alias(AliasMove(UC.name, UC.name, "challenger", 3, 0, AliasKind.SET, at(2)))
    assert core.watches == {} and core.champions == {(UC.name, UC.name): 1}


def test_predictions_served_before_a_switch_do_not_make_the_old_version_champion_again() -> None:
    core = MonitorCore({UC.name: UC})
    _serve(core, V1, 0, 400, flip=0.05, seed=1)
    _promote(core, 1, 2, 400)
    late = _serve(core, V1, 400, 300, flip=0.5, seed=2)  # logged as champion, read after the switch
    assert not late.alarms and core.trackers[V1].alias == "previous"


def test_the_old_champions_open_episode_ends_when_it_stops_serving() -> None:
    core = MonitorCore({UC.name: UC})
    _serve(core, V1, 0, 400, flip=0.05, seed=1)
    drifted = _serve(core, V1, 400, 300, flip=0.5, seed=2)
    (alarm,) = drifted.alarms
    promoted = _promote(core, 1, 2, 700)
    assert promoted.resolved.keys() == {f"alert.{alarm.report_id}"}
    assert not core.trackers[V1].episode.open and "version:loan_approval/loan_approval/v1" in promoted.states


def test_report_and_request_ids_stay_short_enough_for_job_ids() -> None:
    assert id_stem(V1) == "loan_approval.v1"
    assert id_stem(VersionKey("uc", "other", 3)) == "uc.other.v3"
    long = id_stem(VersionKey("u" * 48, "m" * 128, 123456))
    assert len(f"drift-{long}.quality.1000000") <= 120
