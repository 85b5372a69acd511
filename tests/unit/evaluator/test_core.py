"""The evaluator core with in-memory ports: candidate vs champion on the holdout, stored, published."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from aifactory.trainer.v1 import events_pb2 as trainer_events
from libs.errors import FailedPrecondition
from libs.lifecycle.data import time_range_proto
from libs.lifecycle.frames import plan_windows
from libs.lifecycle.registry import ModelKey
from services.evaluator import convert
from services.evaluator.core import EvaluatorCore
from services.evaluator.domain import GateResult, Report, TrainedVersion
from services.evaluator.publisher import EvaluatorPublisher
from services.evaluator.store import ReportStore
from services.trainer.recipe import TrainConfig
from services.trainer.training import train
from tests.lifecycle_fakes import FakePublisher, FakeRegistry, FakeTrainingData
from tests.training_sets import loan_frame, segment_frame, usecase

pytestmark = pytest.mark.timeout(120)
EVALUATED = "t.evaluated"
UC = "loan_approval"


@pytest.fixture(scope="module")
def models():  # type: ignore[no-untyped-def]
    """A frame, its windows, a good model and a model trained on shuffled labels."""
    uc = usecase(UC)  # holdout 5m: one row a second leaves it ~300 rows
    frame = loan_frame(3000, interval=timedelta(seconds=1))
    windows = plan_windows(frame, uc)
    training = frame[frame["event_time"] < windows.training.end]
    config = TrainConfig.from_usecase(uc)
    good = train(training, uc, config, seed=1)
    shuffled = training.copy()
    shuffled["label"] = np.random.default_rng(0).permutation(shuffled["label"].to_numpy())
    bad = train(shuffled, uc, config, seed=1)
    return frame, windows, good.artifact, bad.artifact


def make(tmp_path: Path, frame, registry: FakeRegistry) -> tuple[EvaluatorCore, FakePublisher]:  # type: ignore[no-untyped-def]
    publisher = FakePublisher()
    core = EvaluatorCore(
        usecases={UC: usecase(UC)},
        data=FakeTrainingData({UC: frame}),
        registry=registry,
        store=ReportStore.from_url(f"sqlite:///{tmp_path / 'reports.db'}"),
        publisher=EvaluatorPublisher(publisher, registry, evaluated_topic=EVALUATED),
    )
    return core, publisher


def trained_event(version: int, windows) -> trainer_events.ModelTrained:  # type: ignore[no-untyped-def]
    return trainer_events.ModelTrained(
        model=ModelKey(UC, UC, version).to_proto(), window=time_range_proto(windows.training)
    )


def trained(version: int, windows) -> TrainedVersion:  # type: ignore[no-untyped-def]
    """What the consumer hands the core for a ModelTrained event."""
    return convert.trained_of(trained_event(version, windows))


def gates(report: Report) -> dict[str, GateResult]:
    return {g.gate: g for g in report.gates}


async def test_first_version_passes_on_the_holdout_and_is_recorded(tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    frame, windows, good, _ = models
    registry = FakeRegistry()
    registry.add_version(ModelKey(UC, UC, 1), good)
    core, publisher = make(tmp_path, frame, registry)
    report = await core.evaluate_trained(trained(1, windows))
    g = gates(report)
    assert report.passed, [x.message for x in report.gates]
    assert g["no_regression"].message == "skipped: no champion (first version)"
    assert g["fairness_gap"].passed and not g["fairness_gap"].message.startswith("skipped")  # gender is there
    assert set(report.slices) == {"f", "m", "x"}
    # The holdout: the newest hour, after the training window.
    assert report.window.start == windows.training.end
    rows = {m.name: m.value for m in report.candidate_metrics}["rows"]
    assert rows == 301  # the 5-minute holdout at one row a second
    [event] = publisher.of(EVALUATED)
    assert event.passed and event.report_id == report.report_id and not event.HasField("champion")
    assert registry.evaluations[report.report_id] == event == convert.evaluated_pb(report)
    assert core.get_report(report.report_id) == report
    # What GetEvaluationReport answers: the stored report, as it was made.
    assert convert.report_pb(core.get_report(report.report_id)) == convert.report_pb(report)


async def test_worse_candidate_fails_against_the_champion(tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    frame, windows, good, bad = models
    registry = FakeRegistry()
    registry.add_version(ModelKey(UC, UC, 1), good)
    registry.add_version(ModelKey(UC, UC, 2), bad)
    registry.aliases[(UC, UC, "champion")] = 1
    core, publisher = make(tmp_path, frame, registry)
    report = await core.evaluate_trained(trained(2, windows))
    g = gates(report)
    assert not report.passed
    assert not g["metric_floor"].passed and not g["no_regression"].passed
    assert g["no_regression"].value < -0.2
    assert report.champion is not None and report.champion.version == 1
    assert {m.name for m in report.champion_metrics} >= {"auc", "ece"}
    [event] = publisher.of(EVALUATED)
    assert not event.passed and event.champion.version == 1


async def test_replayed_model_trained_gives_the_same_report(tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    frame, windows, good, _ = models
    registry = FakeRegistry()
    registry.add_version(ModelKey(UC, UC, 1), good)
    core, publisher = make(tmp_path, frame, registry)
    first = await core.evaluate_trained(trained(1, windows))
    # More data arrived meanwhile; the replay must not re-judge on another window.
    core._data = FakeTrainingData({UC: loan_frame(3300, interval=timedelta(seconds=4))})  # type: ignore[attr-defined]
    second = await core.evaluate_trained(trained(1, windows))
    assert second == first
    ids = [eid for t, _, _, _, eid in publisher.sent if t == EVALUATED]
    assert ids == [f"{first.report_id}.evaluated"] * 2 and len(registry.evaluations) == 1


async def test_holdout_never_reaches_into_the_training_window(tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    frame, windows, good, _ = models
    registry = FakeRegistry()
    registry.add_version(ModelKey(UC, UC, 1), good)
    core, _ = make(tmp_path, frame, registry)
    event = trained_event(1, windows)
    # A candidate trained up to 3 minutes before the newest example: 3 minutes left to judge on.
    event.window.end.FromDatetime((windows.newest - timedelta(minutes=3)).replace(tzinfo=None))
    report = await core.evaluate_trained(convert.trained_of(event))
    assert {m.name: m.value for m in report.candidate_metrics}["rows"] == 181
    assert gates(report)["holdout_size"].passed


async def test_on_demand_window_and_missing_attribute(tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    frame, windows, good, _ = models
    registry = FakeRegistry()
    registry.add_version(ModelKey(UC, UC, 1), good)
    core, publisher = make(tmp_path, frame.drop(columns=["gender"]), registry)
    report = await core.evaluate_on_demand(ModelKey(UC, UC, 1), None, windows.holdout)
    assert gates(report)["fairness_gap"].message == "skipped: attribute not in holdout set"
    assert publisher.sent == [] and registry.evaluations == {}  # a what-if promotes nothing


async def test_champion_that_cannot_be_scored_on_the_holdout_fails_the_comparison(
    tmp_path: Path, models
) -> None:  # type: ignore[no-untyped-def]
    # Issue #14: a champion under another input contract used to be "skipped" and the
    # candidate passed with no comparison at all (and auto-promoted).
    frame, windows, good, _ = models
    seg = usecase("image_segments")
    other = train(segment_frame(600), seg, TrainConfig.from_usecase(seg, {"epochs": "1"}), seed=1).artifact
    registry = FakeRegistry()
    registry.add_version(ModelKey(UC, UC, 1), other)
    registry.add_version(ModelKey(UC, UC, 2), good)
    registry.aliases[(UC, UC, "champion")] = 1
    core, publisher = make(tmp_path, frame, registry)
    report = await core.evaluate_trained(trained(2, windows))
    g = gates(report)
    assert not report.passed and not g["no_regression"].passed
    assert g["no_regression"].message.startswith("not compared with the champion")
    assert "the holdout lacks" in g["no_regression"].message and not g["no_regression"].skipped
    assert all(x.passed for x in report.gates if x.gate != "no_regression")  # only the comparison fails
    [event] = publisher.of(EVALUATED)
    assert not event.passed  # the registry must not promote it
    with pytest.raises(FailedPrecondition):
        await core.evaluate_trained(trained(1, windows))  # the candidate itself does not fit the spec


async def test_champion_under_another_contract_is_scored_on_its_own_feature_view(
    tmp_path: Path, models
) -> None:  # type: ignore[no-untyped-def]
    frame, windows, good, bad = models
    # The champion was trained when the spec had one input fewer (and in another order):
    # the holdout still carries its columns, so it is scored on the same rows, its own view.
    full = usecase(UC)
    older = full.model_copy(
        update={
            "features": full.features.model_copy(
                update={"row": [f for f in reversed(full.features.row) if f.name != "loan_to_salary"]}
            )
        }
    )
    assert older.model_inputs() != full.model_inputs()
    training = frame[frame["event_time"] < windows.training.end]
    champion = train(training, older, TrainConfig.from_usecase(older), seed=1).artifact
    registry = FakeRegistry()
    registry.add_version(ModelKey(UC, UC, 1), champion)
    registry.add_version(ModelKey(UC, UC, 2), bad)
    registry.add_version(ModelKey(UC, UC, 3), good)
    registry.aliases[(UC, UC, "champion")] = 1
    core, _ = make(tmp_path, frame, registry)
    worse = gates(await core.evaluate_trained(trained(2, windows)))["no_regression"]
    assert not worse.passed and worse.value < -0.2  # really compared: the shuffled-label model loses
    report = await core.evaluate_trained(trained(3, windows))
    assert report.passed and report.champion == ModelKey(UC, UC, 1)
    compared = gates(report)["no_regression"]
    assert compared.passed and not compared.skipped and abs(compared.value) < 0.05
    assert {m.name: m.value for m in report.champion_metrics}["auc"] > 0.9
