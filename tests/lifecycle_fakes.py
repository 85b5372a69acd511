"""In-memory stand-ins for the trainer's and evaluator's two ports (unit-level fakes).

``FakeTrainingData`` serves frames per use case; ``FakeRegistry`` keeps runs, versions,
artifacts, aliases and evaluations in dicts, with the same idempotency the real
registry promises (a run id, a registration key, a report id count once).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from libs.errors import FailedPrecondition, NotFound, Unavailable
from libs.lifecycle.artifact import sha256
from libs.lifecycle.data import DatasetVersion, FeatureVersion, TrainingSet
from libs.lifecycle.frames import Window, select
from libs.lifecycle.registry import Lineage, MetricPoint, ModelKey, RegisteredVersion, RunSpec


class FakeTrainingData:
    def __init__(self, frames: Mapping[str, pd.DataFrame], *, fail_times: int = 0) -> None:
        self.frames = dict(frames)
        self.calls: list[tuple[str, Window | None]] = []
        self.fail_times = fail_times

    async def get_training_set(self, use_case: str, time_range: Window | None) -> TrainingSet:
        self.calls.append((use_case, time_range))
        if self.fail_times > 0:
            self.fail_times -= 1
            raise Unavailable("feature store down (fake)")
        if use_case not in self.frames:
            raise NotFound(f"no data for {use_case}")
        frame = self.frames[use_case]
        if time_range is not None:
            frame = select(frame, time_range)
        digest = hashlib.sha256(
            pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
        ).hexdigest()
        return TrainingSet(
            frame=frame.copy(),
            datasets=[DatasetVersion(use_case, f"raw-{digest[:12]}", f"file:///fake/{use_case}")],
            features=[FeatureVersion(use_case, use_case, c, "v1") for c in frame.columns[4:6]],
            content_hash=digest,
            uri=f"featurestore://{use_case}/training-sets/{digest}",
        )


@dataclass
class FakeRun:
    spec: RunSpec
    metrics: list[MetricPoint] = field(default_factory=list)
    finished: bool = False
    failed: bool = False
    error: str = ""


@dataclass
class FakeVersion:
    ref: ModelKey
    artifact_sha256: str
    reference: Mapping[str, Any]
    lineage: Lineage


class FakeRegistry:
    def __init__(self) -> None:
        self.runs: dict[str, FakeRun] = {}
        self.versions: dict[ModelKey, FakeVersion] = {}
        self.blobs: dict[str, bytes] = {}
        self.aliases: dict[tuple[str, str, str], int] = {}
        self.evaluations: dict[str, evaluator_events.ModelEvaluated] = {}
        self.registrations = 0
        self._keys: dict[str, ModelKey] = {}

    # -- trainer side ---------------------------------------------------------------

    async def create_run(self, run: RunSpec) -> str:
        self.runs.setdefault(run.run_id, FakeRun(run))
        return run.run_id

    async def log_metrics(self, run_id: str, metrics: Sequence[MetricPoint]) -> None:
        if self.runs[run_id].finished:
            raise FailedPrecondition(f"run {run_id} is finished: metrics can only be logged while running")
        self.runs[run_id].metrics.extend(metrics)

    async def finish_run(
        self,
        run_id: str,
        *,
        failed: bool = False,
        error: str = "",
        metrics: Sequence[MetricPoint] = (),
        datasets: Sequence[DatasetVersion] = (),
        features: Sequence[FeatureVersion] = (),
        duration_s: float | None = None,
    ) -> None:
        if run_id not in self.runs:
            raise NotFound(f"run {run_id}")
        run = self.runs[run_id]
        if run.finished:
            raise FailedPrecondition(f"run {run_id} is already finished")
        run.metrics.extend(metrics)
        run.finished, run.failed, run.error = True, failed, error

    async def register_version(
        self, artifact: bytes, reference: Mapping[str, Any], lineage: Lineage
    ) -> RegisteredVersion:
        self.registrations += 1
        digest = sha256(artifact)
        key = lineage.idempotency_key or lineage.run_id
        if key in self._keys:
            ref = self._keys[key]
        else:
            version = 1 + max(
                (
                    k.version
                    for k in self.versions
                    if (k.use_case, k.model_name) == (lineage.use_case, lineage.model_name)
                ),
                default=0,
            )
            ref = ModelKey(lineage.use_case, lineage.model_name, version)
            self._keys[key] = ref
            self.blobs[digest] = artifact
            self.versions[ref] = FakeVersion(ref, digest, reference, lineage)
        return RegisteredVersion(
            ref, f"cas://{self.versions[ref].artifact_sha256}", self.versions[ref].artifact_sha256
        )

    # -- evaluator side -------------------------------------------------------------

    def add_version(self, ref: ModelKey, artifact: bytes) -> None:
        digest = sha256(artifact)
        self.blobs[digest] = artifact
        self.versions[ref] = FakeVersion(ref, digest, {}, None)  # type: ignore[arg-type]

    async def get_artifact(self, ref: ModelKey) -> bytes:
        if ref not in self.versions:
            raise NotFound(f"model version {ref} not found")
        return self.blobs[self.versions[ref].artifact_sha256]

    async def get_alias(self, use_case: str, model_name: str, alias: str) -> ModelKey | None:
        version = self.aliases.get((use_case, model_name, alias))
        return None if version is None else ModelKey(use_case, model_name, version)

    async def record_evaluation(self, evaluation: evaluator_events.ModelEvaluated) -> None:
        self.evaluations.setdefault(evaluation.report_id, evaluation)


class FakePublisher:
    """Collects published events (unit tests of the cores; the integration tests use Kafka)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, str, str | None, str | None]] = []

    async def publish(
        self, topic: str, event: Any, *, use_case: str, key: str | None = None, event_id: str | None = None
    ) -> None:
        self.sent.append((topic, event, use_case, key, event_id))

    def of(self, topic: str) -> list[Any]:
        return [e for t, e, *_ in self.sent if t == topic]


class FakeOwners:
    """The evaluator's and the monitor's read APIs (``libs.lifecycle.owners``) as dicts, for
    tests that are not about confirming events: each ``confirm_*`` stores what the owner
    would hold for that event and returns the event. tests/security/test_attack_events.py
    runs the real owners instead."""

    def __init__(self) -> None:
        self.reports: dict[str, Any] = {}
        self.drift: dict[str, Any] = {}
        self.alerts: dict[str, Any] = {}

    def confirm_evaluation(self, event: evaluator_events.ModelEvaluated) -> evaluator_events.ModelEvaluated:
        from aifactory.evaluator.v1 import evaluator_service_pb2 as ev_pb

        if not event.gates:
            # A verdict is read from its gates: one that says what ``passed`` says.
            event.gates.append(
                evaluator_events.GateResult(
                    gate="metric_floor",
                    metric="auc",
                    value=0.9 if event.passed else 0.5,
                    threshold=0.75,
                    passed=event.passed,
                    comparator=">=",
                )
            )
        self.reports[event.report_id] = ev_pb.EvaluationReport(
            report_id=event.report_id, model=event.model, passed=event.passed, gates=event.gates
        )
        return event

    def confirm_drift(self, event: Any) -> Any:
        from aifactory.monitor.v1 import monitor_service_pb2 as mon_pb

        self.drift[event.report_id] = mon_pb.DriftReport(
            report_id=event.report_id,
            use_case=event.use_case,
            model=event.model,
            drift_detected=True,
            evidence=event.evidence,
        )
        return event

    def confirm_rollback(self, event: Any) -> Any:
        from aifactory.monitor.v1 import monitor_service_pb2 as mon_pb
        from libs.lifecycle.owners import rollback_alert_id

        alert_id = rollback_alert_id(event.request_id)
        self.alerts[alert_id] = mon_pb.Alert(
            alert_id=alert_id,
            use_case=event.use_case or event.model.use_case,
            model=event.model,
            kind="rollback",
            message=event.reason,
        )
        return event

    async def report(self, report_id: str) -> Any:
        return self.reports.get(report_id)

    async def drift_report(self, report_id: str) -> Any:
        return self.drift.get(report_id)

    async def alert(self, use_case: str, alert_id: str) -> Any:
        found = self.alerts.get(alert_id)
        return found if found is not None and found.use_case == use_case else None
