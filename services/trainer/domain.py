"""The trainer's domain types: training jobs and what a finished training produced. No protobuf.

A job is one training request and what came of it; :class:`TrainedModel` is what a
successful job announces (the ``ModelTrained`` event, built from it in :mod:`.convert`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from libs.lifecycle.data import DatasetVersion, FeatureVersion
from libs.lifecycle.frames import Window
from libs.lifecycle.registry import MetricPoint, ModelKey, RegisteredVersion


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


FINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.SKIPPED})


class Reason(StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    DRIFT = "drift"


@dataclass(frozen=True)
class Job:
    job_id: str
    use_case: str
    reason: Reason
    state: JobState = JobState.QUEUED
    drift_report_id: str = ""
    requested_by: str = ""
    requested_roles: tuple[str, ...] = ()
    seed: int | None = None
    window: Window | None = None
    # The request's overrides, and every setting the training used (known once it starts).
    params: dict[str, str] = field(default_factory=dict)
    effective_params: dict[str, str] = field(default_factory=dict)
    run_id: str = ""
    model: ModelKey | None = None
    metrics: tuple[MetricPoint, ...] = ()
    message: str = ""
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # When a debounced request becomes due; None: as soon as possible.
    due_at: datetime | None = None
    artifact_sha256: str = ""
    artifact_uri: str = ""

    @property
    def manual(self) -> bool:
        return self.reason == Reason.MANUAL


@dataclass(frozen=True)
class TrainedModel:
    """A version a job trained and registered: what ``ModelTrained`` announces."""

    job: Job
    registered: RegisteredVersion
    run_id: str
    window: Window
    metrics: tuple[MetricPoint, ...]
    datasets: tuple[DatasetVersion, ...]
    features: tuple[FeatureVersion, ...]
    code_version: str
    seed: int
    params: Mapping[str, str]
    trained_at: datetime


@dataclass(frozen=True)
class SkippedTraining:
    """A job that ended without training, and why: what ``TrainingSkipped`` announces."""

    job: Job
    code: str  # machine-readable cause ("insufficient_data")
    message: str
    labelled_rows: int
    needed_rows: int
    window: Window
    waited_s: float
    skipped_at: datetime
