"""The trainer core with in-memory ports: request → job → training → version → ModelTrained."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aifactory.common.v1 import common_pb2
from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.trainer.v1 import events_pb2 as trainer_events
from libs.bus import Event, EventMeta
from libs.errors import InvalidArgument
from libs.lifecycle import artifact
from libs.lifecycle.confirm import Unconfirmed
from libs.lifecycle.frames import Window
from libs.usecase import UnknownUseCase, load_default
from libs.usecase.model import RetrainingSpec
from services.trainer.consumers import TrainerConsumer
from services.trainer.core import TrainerCore, TrainerOptions
from services.trainer.domain import FINAL, Job, JobState, Reason
from services.trainer.publisher import TrainerPublisher
from services.trainer.recipe import TrainConfig
from services.trainer.store import JobStore
from tests.lifecycle_fakes import FakeOwners, FakePublisher, FakeRegistry, FakeTrainingData
from tests.training_sets import loan_frame, usecase

# Labelled rows a drift retraining of the loan spec waits for: min_rows plus the validation share.
NEEDED = TrainConfig.from_usecase(load_default()["loan_approval"]).labelled_rows_needed

pytestmark = pytest.mark.timeout(120)

TRAINED, REQUESTED = "t.trained", "t.requested"


def loan_uc(debounce: float = 0.2, cooldown: float = 0.0, budget: int = 20):  # type: ignore[no-untyped-def]
    return usecase("loan_approval").model_copy(
        update={
            "retraining": RetrainingSpec(
                debounce=timedelta(seconds=debounce), cooldown=timedelta(seconds=cooldown), max_per_day=budget
            )
        }
    )


def frame():  # type: ignore[no-untyped-def]
    # 3000 rows 4 s apart: 3 h 20 min; the newest hour is the evaluator's.
    return loan_frame(3000, interval=timedelta(seconds=4))


def make_core(
    tmp_path: Path,
    data: FakeTrainingData | None = None,
    registry: FakeRegistry | None = None,
    publisher: FakePublisher | None = None,
    options: TrainerOptions | None = None,
    **uc_kw: Any,
) -> tuple[TrainerCore, FakeRegistry, FakePublisher, JobStore]:
    registry = registry or FakeRegistry()
    publisher = publisher or FakePublisher()
    store = JobStore.from_url(f"sqlite:///{tmp_path / 'jobs.db'}")
    core = TrainerCore(
        usecases={"loan_approval": loan_uc(**uc_kw)},
        store=store,
        data=data or FakeTrainingData({"loan_approval": frame()}),
        registry=registry,
        publisher=TrainerPublisher(publisher, trained_topic=TRAINED, requested_topic=REQUESTED),
        code_version="abc123",
        options=options or TrainerOptions(dependency_backoff_s=0.01),
    )
    return core, registry, publisher, store


async def wait_final(core: TrainerCore, job_id: str, timeout: float = 60) -> Job:
    async with asyncio.timeout(timeout):
        while (job := core.get(job_id)).state not in (JobState.SUCCEEDED, JobState.FAILED, JobState.SKIPPED):
            await asyncio.sleep(0.05)
    return job


async def test_manual_request_trains_registers_and_publishes(tmp_path: Path) -> None:
    core, registry, publisher, _ = make_core(tmp_path)
    await core.start()
    try:
        job, created = await core.submit(
            Job("r1", "loan_approval", Reason.MANUAL, seed=7, params={"epochs": "4"}, requested_by="alice")
        )
        assert created
        job = await wait_final(core, "r1")
    finally:
        await core.stop()
    assert job.state == JobState.SUCCEEDED, job.message
    [event] = publisher.of(TRAINED)
    assert isinstance(event, trainer_events.ModelTrained)
    assert (event.model.use_case, event.model.model_name, event.model.version) == (
        "loan_approval",
        "loan_approval",
        1,
    )
    assert event.request_id == "r1" and event.seed == 7 and event.code_version == "abc123"
    assert event.run_id == job.run_id == "run-r1" and event.params["epochs"] == "4"
    assert event.reason == trainer_events.TRAINING_REASON_MANUAL
    version = registry.versions[job.model]  # type: ignore[index]
    assert (
        event.artifact_sha256
        == version.artifact_sha256
        == artifact.sha256(registry.blobs[version.artifact_sha256])
    )
    assert {m.name for m in event.metrics} >= {"auc", "accuracy", "ece", "val_loss"}
    # Training never saw the newest hour (the evaluator's holdout).
    newest = frame()["event_time"].max().to_pydatetime()
    assert (
        event.window.end.ToDatetime().replace(tzinfo=newest.tzinfo)
        == newest - load_default()["loan_approval"].evaluation.holdout
    )
    # The run was recorded as it went: 4 epochs × 4 points, then final metrics.
    run = registry.runs["run-r1"]
    assert run.finished and not run.failed
    assert sorted({m.step for m in run.metrics if m.step}) == [1, 2, 3, 4]
    assert version.lineage.idempotency_key == "r1" and version.reference["quality"]["metric"] == "auc"
    # The job shows progress: per-epoch metrics with steps.
    assert max(m.step for m in job.metrics) == 4


async def test_submit_is_idempotent_and_validates(tmp_path: Path) -> None:
    core, _, _, _ = make_core(tmp_path)
    job, created = await core.submit(Job("same", "loan_approval", Reason.MANUAL, params={"epochs": "1"}))
    again, created_again = await core.submit(Job("same", "loan_approval", Reason.MANUAL))
    assert created and not created_again and again.job_id == job.job_id
    with pytest.raises(UnknownUseCase) as unknown:  # NOT_FOUND at the gRPC edge
        await core.submit(Job("x", "nope", Reason.MANUAL))
    assert unknown.value.field == "use_case"
    with pytest.raises(InvalidArgument) as info:
        await core.submit(Job("y", "loan_approval", Reason.MANUAL, params={"epochs": "-1"}))
    assert info.value.field == "params.epochs"


async def test_drift_storm_becomes_one_training_linked_to_the_first_report(tmp_path: Path) -> None:
    core, registry, publisher, _ = make_core(tmp_path, debounce=0.3, cooldown=600)
    owners = FakeOwners()  # the monitor holds each report (tests/security: the real one)
    consumer = TrainerConsumer(
        core, TrainerPublisher(publisher, trained_topic=TRAINED, requested_topic=REQUESTED), monitor=owners
    )
    await core.start()
    try:
        for i in range(20):
            drift = owners.confirm_drift(
                monitor_events.DriftDetected(report_id=f"rep-{i}", use_case="loan_approval")
            )
            meta = EventMeta.new("aifactory.monitor.v1.DriftDetected", "v1", "loan_approval", "monitor")
            await consumer.handle(Event(meta, drift, "drift", 0, i, None))
        job = await wait_final(core, "drift-rep-0")
        await asyncio.sleep(0.5)
    finally:
        await core.stop()
    assert job.state == JobState.SUCCEEDED and job.drift_report_id == "rep-0"
    others = [core.get(f"drift-rep-{i}") for i in range(1, 20)]
    assert all(j.state == JobState.SKIPPED and "coalesced into job drift-rep-0" in j.message for j in others)
    [trained] = publisher.of(TRAINED)
    assert trained.drift_report_id == "rep-0" and trained.reason == trainer_events.TRAINING_REASON_DRIFT
    assert registry.versions[job.model].lineage.drift_report_id == "rep-0"  # type: ignore[index]
    requested = publisher.of(REQUESTED)
    assert len(requested) == 20 and requested[0].drift_report_id == "rep-0"


async def test_a_drift_report_the_monitor_does_not_hold_trains_nothing(tmp_path: Path) -> None:
    core, _, publisher, _ = make_core(tmp_path)
    owners = FakeOwners()
    held = owners.confirm_drift(
        monitor_events.DriftDetected(
            report_id="rep-real",
            use_case="loan_approval",
            model=common_pb2.ModelRef(use_case="loan_approval", model_name="loan_approval", version=1),
        )
    )
    consumer = TrainerConsumer(
        core, TrainerPublisher(publisher, trained_topic=TRAINED, requested_topic=REQUESTED), monitor=owners
    )
    meta = EventMeta.new("aifactory.monitor.v1.DriftDetected", "v1", "loan_approval", "monitor")
    made_up = monitor_events.DriftDetected(report_id="rep-made-up", use_case="loan_approval")
    other_version = monitor_events.DriftDetected()
    other_version.CopyFrom(held)
    other_version.model.version = 7
    for forged in (made_up, other_version):
        with pytest.raises(Unconfirmed):
            await consumer.handle(Event(meta, forged, "drift", 0, 0, None))
    assert consumer.forged.counts == {"aifactory.monitor.v1.DriftDetected": 2}
    assert core.list(use_case="loan_approval") == [] and not publisher.of(REQUESTED)


async def test_a_training_request_the_trainer_never_accepted_trains_nothing(tmp_path: Path) -> None:
    core, _, publisher, _ = make_core(tmp_path)
    owners = FakeOwners()
    owners.confirm_drift(monitor_events.DriftDetected(report_id="rep-real", use_case="loan_approval"))
    consumer = TrainerConsumer(
        core, TrainerPublisher(publisher, trained_topic=TRAINED, requested_topic=REQUESTED), monitor=owners
    )
    meta = EventMeta.new("aifactory.trainer.v1.TrainingRequested", "v1", "loan_approval", "trainer")
    manual, drift = trainer_events.TRAINING_REASON_MANUAL, trainer_events.TRAINING_REASON_DRIFT
    forgeries = [
        trainer_events.TrainingRequested(request_id="req-made-up", use_case="loan_approval", reason=manual),
        trainer_events.TrainingRequested(use_case="loan_approval", reason=manual),  # no request id
        trainer_events.TrainingRequested(
            request_id="drift-x", use_case="loan_approval", reason=drift, drift_report_id="rep-made-up"
        ),
    ]
    for forged in forgeries:
        with pytest.raises(Unconfirmed):
            await consumer.handle(Event(meta, forged, "requested", 0, 0, None))
    assert consumer.forged.counts == {"aifactory.trainer.v1.TrainingRequested": 3}
    assert core.list(use_case="loan_approval") == [] and not publisher.of(REQUESTED)

    # The trainer's own record of a request it accepted: confirmed by its store, a no-op; the
    # same request id claimed for another reason is not.
    job, _ = await core.submit(Job("req-real", "loan_approval", Reason.MANUAL))
    record = trainer_events.TrainingRequested(request_id="req-real", use_case="loan_approval", reason=manual)
    await consumer.handle(Event(meta, record, "requested", 0, 1, None))
    record.reason = trainer_events.TRAINING_REASON_SCHEDULE
    with pytest.raises(Unconfirmed):
        await consumer.handle(Event(meta, record, "requested", 0, 2, None))
    # A drift request the monitor confirms: one job, from the monitor's report.
    confirmed = trainer_events.TrainingRequested(
        request_id="drift-rep-real", use_case="loan_approval", reason=drift, drift_report_id="rep-real"
    )
    await consumer.handle(Event(meta, confirmed, "requested", 0, 3, None))
    await consumer.handle(Event(meta, confirmed, "requested", 0, 4, None))  # replayed: no second
    assert sorted(j.job_id for j in core.list(use_case="loan_approval")) == ["drift-rep-real", "req-real"]
    assert consumer.forged.counts == {"aifactory.trainer.v1.TrainingRequested": 4}


async def test_interrupted_job_is_trained_again_without_a_second_version(tmp_path: Path) -> None:
    registry, publisher = FakeRegistry(), FakePublisher()
    core, _, _, store = make_core(tmp_path, registry=registry, publisher=publisher)
    await core.start()
    try:
        await core.submit(Job("r1", "loan_approval", Reason.MANUAL, seed=3, params={"epochs": "2"}))
        first = await wait_final(core, "r1")
    finally:
        await core.stop()
    # As if the process died after publishing but before the job was marked final.
    store.update("r1", state=JobState.RUNNING)
    core2, _, _, _ = make_core(tmp_path, registry=registry, publisher=publisher)
    await core2.start()
    try:
        second = await wait_final(core2, "r1")
    finally:
        await core2.stop()
    assert second.state == JobState.SUCCEEDED and second.model == first.model
    assert len(registry.versions) == 1 and registry.registrations == 2
    ids = [eid for t, _, _, _, eid in publisher.sent if t == TRAINED]
    assert ids == ["r1.trained", "r1.trained"]  # same event id: consumers dedupe
    a, b = publisher.of(TRAINED)
    assert a.artifact_sha256 == b.artifact_sha256  # same seed, same data → same weights


async def test_dependency_outage_is_retried_then_fails_the_job(tmp_path: Path) -> None:
    data = FakeTrainingData({"loan_approval": frame()}, fail_times=1)
    core, _, _, _ = make_core(tmp_path, data=data)
    await core.start()
    try:
        await core.submit(Job("ok", "loan_approval", Reason.MANUAL, params={"epochs": "1"}))
        assert (await wait_final(core, "ok")).state == JobState.SUCCEEDED
        data.fail_times = 10
        await core.submit(Job("down", "loan_approval", Reason.MANUAL, params={"epochs": "1"}))
        failed = await wait_final(core, "down")
    finally:
        await core.stop()
    assert failed.state == JobState.FAILED and "feature store down" in failed.message


async def test_too_little_data_fails_with_the_reason(tmp_path: Path) -> None:
    core, registry, publisher, _ = make_core(
        tmp_path, data=FakeTrainingData({"loan_approval": loan_frame(400)})
    )
    await core.start()
    try:
        await core.submit(Job("small", "loan_approval", Reason.MANUAL))
        job = await wait_final(core, "small")
    finally:
        await core.stop()
    assert job.state == JobState.FAILED and "min_rows" in job.message
    assert registry.runs["run-small"].failed and not publisher.of(TRAINED)


async def test_progress_is_exported_as_metrics(tmp_path: Path) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from services.trainer.instruments import TrainerMetrics

    reader = InMemoryMetricReader()
    metrics = TrainerMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    core, _, _, store = make_core(tmp_path)
    core._metrics = metrics  # type: ignore[attr-defined]
    await core.start()
    try:
        await core.submit(Job("m1", "loan_approval", Reason.MANUAL, params={"epochs": "3"}))
        assert (await wait_final(core, "m1")).state == JobState.SUCCEEDED
    finally:
        await core.stop()
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {
        m.name: list(m.data.data_points)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert sum(p.value for p in points["aif.trainer.epochs"]) == 3
    assert all(p.value > 0 for p in points["aif.trainer.throughput"])
    assert {p.attributes["split"] for p in points["aif.trainer.last_loss"]} == {"train", "validation"}
    assert {p.attributes["outcome"] for p in points["aif.trainer.jobs"]} == {"queued", "succeeded"}


async def wait_message(core: TrainerCore, job_id: str, text: str, timeout: float = 30) -> Job:
    async with asyncio.timeout(timeout):
        while text not in (job := core.get(job_id)).message:
            await asyncio.sleep(0.02)
    return job


async def test_drift_job_waits_for_data_after_its_change_point_without_blocking_others(
    tmp_path: Path,
) -> None:
    # Late outcomes: the change point is inside the newest hour (the holdout) of what is
    # labelled so far, so the window from it to the holdout cut is still empty.
    full = loan_frame(6000, interval=timedelta(seconds=4))
    data = FakeTrainingData({"loan_approval": full.iloc[:3000]})
    options = TrainerOptions(dependency_backoff_s=0.01, data_wait_s=60, data_poll_s=0.05)
    core, registry, publisher, _ = make_core(tmp_path, data=data, options=options, debounce=0.0)
    change = full["event_time"].iloc[2999].to_pydatetime()
    await core.start()
    try:
        await core.submit(
            Job(
                "drift-1",
                "loan_approval",
                Reason.DRIFT,
                drift_report_id="rep-1",
                window=Window(change, change + timedelta(days=365)),
                params={"epochs": "1"},
            )
        )
        waiting = await wait_message(core, "drift-1", "waiting for labelled data")
        assert waiting.state == JobState.QUEUED and f"0 of {NEEDED} rows" in waiting.message
        # The parked job does not hold the worker: a manual training runs meanwhile.
        await core.submit(Job("m1", "loan_approval", Reason.MANUAL, params={"epochs": "1"}))
        assert (await wait_final(core, "m1")).state == JobState.SUCCEEDED
        assert core.get("drift-1").state not in FINAL
        data.frames["loan_approval"] = full  # the outcomes arrive
        job = await wait_final(core, "drift-1")
    finally:
        await core.stop()
    assert job.state == JobState.SUCCEEDED, job.message
    assert job.window is not None
    trained = [e for e in publisher.of(TRAINED) if e.request_id == "drift-1"]
    assert len(trained) == 1 and trained[0].drift_report_id == "rep-1"
    assert trained[0].window.start.ToDatetime(tzinfo=change.tzinfo) == change
    assert not publisher.of(REQUESTED)


async def test_drift_job_gives_up_with_an_event_and_the_next_alarm_starts_over(tmp_path: Path) -> None:
    full = loan_frame(3000, interval=timedelta(seconds=4))
    data = FakeTrainingData({"loan_approval": full})
    options = TrainerOptions(dependency_backoff_s=0.01, data_wait_s=0.3, data_poll_s=0.05)
    core, registry, publisher, _ = make_core(tmp_path, data=data, options=options, debounce=0.0, cooldown=600)
    change = full["event_time"].iloc[2999].to_pydatetime()
    window = Window(change, change + timedelta(days=365))
    await core.start()
    try:
        await core.submit(
            Job("drift-1", "loan_approval", Reason.DRIFT, drift_report_id="rep-1", window=window)
        )
        job = await wait_final(core, "drift-1")
        # The next alarm is not swallowed by a cooldown or a budget: no training happened.
        second, created = await core.submit(
            Job("drift-2", "loan_approval", Reason.DRIFT, drift_report_id="rep-2", window=window)
        )
        assert created and second.state != JobState.SKIPPED, second.message
        await wait_message(core, "drift-2", "waiting for labelled data")
    finally:
        await core.stop()
    assert job.state == JobState.SKIPPED and "gave up after" in job.message
    [skipped] = [e for e in publisher.of(REQUESTED) if e.request_id == "drift-1"]
    assert isinstance(skipped, trainer_events.TrainingSkipped)
    assert skipped.code == "insufficient_data" and skipped.drift_report_id == "rep-1"
    assert skipped.labelled_rows == 0 and skipped.needed_rows == NEEDED and skipped.waited_s >= 0.3
    assert skipped.reason == trainer_events.TRAINING_REASON_DRIFT
    assert not publisher.of(TRAINED) and not registry.runs
