"""The trainer's core: requests become jobs, jobs become registered candidate versions.

Transports are thin: the Kafka consumer (:mod:`.consumers`: training requests, drift
reports) and the gRPC servicer both call :class:`TrainerCore`, with domain types only;
``ModelTrained`` leaves through a :class:`Publisher` (:mod:`.publisher` turns it into
protobuf). Jobs are persisted (:mod:`.store`); the scheduler (:mod:`.scheduler`) decides
when a request trains; one job trains at a time, in a worker thread, so the event loop
keeps answering.

Crash safety: a job is marked SUCCEEDED only after its ``ModelTrained`` is published.
A job found RUNNING at start is trained again with the same seed (same weights), the
registry's idempotency key (the job id) returns the version already registered, and
``ModelTrained`` goes out with the same event id — nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import platform
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import pandas as pd
import torch

from libs.errors import AifError, FailedPrecondition, InvalidArgument
from libs.lifecycle.data import TrainingData, TrainingSet
from libs.lifecycle.frames import Window, class_names, labelled, plan_windows, select
from libs.lifecycle.registry import Lineage, MetricPoint, ModelRegistry, RunSpec
from libs.retry import RetryPolicy
from libs.usecase import UseCase, UseCases
from libs.usecase.model import RetrainingSpec
from services.trainer.domain import FINAL, Job, JobState, SkippedTraining, TrainedModel
from services.trainer.instruments import TrainerMetrics
from services.trainer.recipe import TrainConfig
from services.trainer.scheduler import Action, RetrainScheduler
from services.trainer.store import JobStore
from services.trainer.training import EpochMetrics, TrainResult, train

log = logging.getLogger(__name__)
T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]


class Publisher(Protocol):
    """Where a registered version is announced (``ModelTrained``), and a job that gave up
    without training (``TrainingSkipped``)."""

    async def model_trained(self, trained: TrainedModel) -> None: ...

    async def training_skipped(self, skipped: SkippedTraining) -> None: ...


def code_version(root: Path = REPO_ROOT) -> str:
    """The git commit the code runs from (``-dirty`` with local changes); "unknown" outside git."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def environment(threads: int) -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "host": platform.node(),
        "threads": str(threads),
        "executable": sys.executable,
    }


def model_name_of(uc: UseCase) -> str:
    """One model per use case, named after it."""
    return uc.name


@dataclass(frozen=True)
class TrainerOptions:
    threads: int = 1
    # Attempts (and first backoff) when the feature store or registry is unavailable.
    dependency_attempts: int = 3
    dependency_backoff_s: float = 1.0
    # A drift retraining waits this long (from its first start) for enough labelled data
    # after the change point, looking again every ``data_poll_s``; then it gives up.
    data_wait_s: float = 600.0
    data_poll_s: float = 3.0


class _Abandoned(Exception):
    """Raised in the training thread when the service stops mid-training."""


class _WaitingForData(Exception):
    """The job's own window (from a change point on) lacks labelled rows: park it, do not fail it."""

    def __init__(self, window: Window, rows: int, needed: int) -> None:
        super().__init__(f"{rows} of {needed} labelled rows")
        self.window = window
        self.rows = rows
        self.needed = needed


class TrainerCore:
    def __init__(
        self,
        *,
        usecases: Mapping[str, UseCase],
        store: JobStore,
        data: TrainingData,
        registry: ModelRegistry,
        publisher: Publisher,
        metrics: TrainerMetrics | None = None,
        code_version: str = "unknown",
        options: TrainerOptions | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # The catalogue's live set: a use case applied while running is known at once.
        self._usecases = UseCases.view(usecases)
        self._store = store
        self._data = data
        self._registry = registry
        self._publisher = publisher
        self._metrics = metrics
        self._code_version = code_version
        self._options = options or TrainerOptions()
        self._clock = clock
        self.scheduler = RetrainScheduler(self._policy, clock)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainer")
        self._tasks: list[asyncio.Task[None]] = []
        self._log_tasks: set[asyncio.Task[None]] = set()
        self._stopping = threading.Event()

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> list[asyncio.Task[None]]:
        """Start the dispatcher and the worker; returns their tasks (the service watches them)."""
        self._restore()
        self._tasks = [
            asyncio.create_task(self._dispatch(), name="trainer-dispatch"),
            asyncio.create_task(self._work(), name="trainer-work"),
        ]
        return list(self._tasks)

    async def stop(self) -> None:
        """Stop taking jobs. A training in progress is abandoned: its job stays RUNNING and
        is trained again at the next start."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _restore(self) -> None:
        now = self._clock()
        for job in self._store.list(limit=1_000_000, oldest_first=True):
            if job.state in FINAL:
                if job.started_at and now - job.started_at < timedelta(days=1):
                    self.scheduler.restore(
                        job.use_case, job.job_id, started_at=job.started_at, finished_at=job.finished_at
                    )
                continue
            if job.state == JobState.RUNNING:
                log.warning("job %s was interrupted; training it again", job.job_id)
                self._store.update(job.job_id, state=JobState.QUEUED, message="re-run after restart")
                self.scheduler.restore(job.use_case, job.job_id, started_at=job.started_at, queued=True)
                self._queue.put_nowait(job.job_id)
            elif job.due_at is not None and not job.manual:
                self.scheduler.restore(job.use_case, job.job_id, due_at=job.due_at)
            else:
                self.scheduler.restore(job.use_case, job.job_id, queued=True)
                self._queue.put_nowait(job.job_id)

    def _policy(self, use_case: str) -> RetrainingSpec:
        return self._usecase(use_case).retraining

    def _usecase(self, name: str) -> UseCase:
        return self._usecases.require(name)

    # -- requests -------------------------------------------------------------------

    async def submit(self, job: Job, *, fresh_evidence: bool = False) -> tuple[Job, bool]:
        """Persist a request and decide it; returns the job and whether it is new.

        Idempotent by job id: the same request id returns the first job.
        """
        uc = self._usecase(job.use_case)
        TrainConfig.from_usecase(uc, job.params)  # refuse bad overrides now, not at run time
        if job.seed is not None and not 0 <= job.seed < 2**63:
            raise InvalidArgument("seed", "must be a non-negative 64-bit integer")
        job, created = self._store.create(job)
        if not created:
            return job, False
        decision = self.scheduler.request(
            job.use_case, job.job_id, manual=job.manual, fresh_evidence=fresh_evidence
        )
        if decision.action == Action.RUN:
            job = self._store.update(job.job_id, message="queued")
            self._queue.put_nowait(job.job_id)
        elif decision.action == Action.DEFER:
            job = self._store.update(job.job_id, due_at=decision.due_at, message=decision.reason)
            self._wake.set()
        else:
            job = self._store.update(
                job.job_id, state=JobState.SKIPPED, message=decision.reason, finished_at=self._clock()
            )
        log.info(
            "training request %s (%s, %s): %s %s",
            job.job_id,
            job.use_case,
            job.reason.value,
            decision.action.value,
            decision.reason,
        )
        self._count(
            job.use_case,
            {Action.RUN: "queued", Action.DEFER: "deferred", Action.SKIP: "skipped"}[decision.action],
        )
        return job, True

    async def retrain_on_drift(self, job: Job, *, evidence_version: int) -> tuple[Job, bool]:
        """A retraining request from a drift report about ``evidence_version`` of the model.

        Evidence about the newest version this trainer produced (or a newer one) is new
        evidence: the scheduler lets it wait out a cooldown rather than skip it.
        """
        newest = self._newest_version(job.use_case)
        return await self.submit(job, fresh_evidence=newest is None or evidence_version >= newest)

    def _newest_version(self, use_case: str) -> int | None:
        """The newest model version this trainer produced for ``use_case``."""
        done = self._store.list(use_case=use_case, states=(JobState.SUCCEEDED,), limit=1000)
        versions = [j.model.version for j in done if j.model is not None]
        return max(versions) if versions else None

    def get(self, job_id: str) -> Job:
        return self._store.get(job_id)

    def list(
        self, *, use_case: str = "", states: tuple[JobState, ...] = (), limit: int = 50, offset: int = 0
    ) -> list[Job]:
        return self._store.list(use_case=use_case, states=states, limit=limit, offset=offset)

    def _count(self, use_case: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.job(use_case, outcome)

    # -- scheduling -----------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Turn debounced requests into runs (or skips) when they fall due."""
        while True:
            # Cleared before looking, so a request arriving meanwhile wakes the next wait.
            self._wake.clear()
            for use_case, job_id, decision in self.scheduler.due():
                try:
                    if decision.action == Action.RUN:
                        self._store.update(job_id, due_at=None, message=decision.reason)
                        self._queue.put_nowait(job_id)
                    else:
                        self._store.update(
                            job_id, state=JobState.SKIPPED, message=decision.reason, finished_at=self._clock()
                        )
                        self._count(use_case, "skipped")
                except Exception:  # noqa: BLE001 - the job stays queued in the store; a restart picks it up
                    log.exception("job %s: could not record the scheduler's decision", job_id)
            due = self.scheduler.next_due()
            timeout = None if due is None else max(0.0, (due - self._clock()).total_seconds())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            except TimeoutError:
                pass

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            try:
                await self.run_job(job_id)
            except Exception:  # noqa: BLE001 - one broken job must not stop the worker
                log.exception("job %s: unexpected failure", job_id)

    # -- one job --------------------------------------------------------------------

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call`` under the factory's one retry policy: Unavailable only, doubling from
        ``dependency_backoff_s``, ``dependency_attempts`` tries, the last error re-raised."""
        backoff = self._options.dependency_backoff_s
        policy = RetryPolicy(
            attempts=self._options.dependency_attempts,
            initial_s=backoff,
            max_s=max(backoff, 60.0),
            jitter_s=backoff / 2,
        )
        return await policy.call(what, call)

    async def run_job(self, job_id: str) -> Job:
        """Train one job to the end: data → training → registration → ModelTrained."""
        job = self._store.get(job_id)
        if job.state in FINAL:
            return job
        try:
            uc = self._usecase(job.use_case)
            config = TrainConfig.from_usecase(uc, job.params, threads=self._options.threads)
        except AifError as exc:  # the spec changed since the request was accepted
            self.scheduler.dropped(job.use_case, job_id)
            self._count(job.use_case, "failed")
            return self._store.update(
                job_id, state=JobState.FAILED, message=exc.message, finished_at=self._clock()
            )
        seed = job.seed if job.seed is not None else uc.model.seed
        run_id = job.run_id or f"run-{job.job_id}"
        self.scheduler.started(job.use_case, job.job_id)
        job = self._store.update(
            job_id,
            state=JobState.RUNNING,
            started_at=job.started_at or self._clock(),
            seed=seed,
            run_id=run_id,
            effective_params=config.as_params(),
            message="loading the training set",
            metrics=(),
        )
        # A parked or given-up job has told the scheduler itself (no cooldown, no budget spent).
        scheduler_told = False
        try:
            return await self._train_and_register(job, uc, config, seed, run_id)
        except _WaitingForData as wait:
            scheduler_told = True
            return await self._park_or_give_up(job, wait)
        except _Abandoned:
            log.info("job %s abandoned by the stopping service; it runs again at the next start", job_id)
            return job
        except Exception as exc:
            message = exc.message if isinstance(exc, AifError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, AifError):
                log.exception("job %s failed", job_id)
            else:
                log.warning("job %s failed: %s", job_id, message)
            job = self._store.update(
                job_id, state=JobState.FAILED, message=message, finished_at=self._clock()
            )
            self._count(job.use_case, "failed")
            try:
                await self._registry.finish_run(run_id, failed=True, error=message)
            except Exception as finish_exc:  # noqa: BLE001 - the run may not exist; the job says why
                log.warning("job %s: could not mark run %s failed: %s", job_id, run_id, finish_exc)
            return job
        finally:
            if not scheduler_told:
                self.scheduler.finished(job.use_case, job.job_id)
            self._wake.set()

    async def _park_or_give_up(self, job: Job, wait: _WaitingForData) -> Job:
        """A job short of data goes back to the queue in ``data_poll_s`` (the worker trains
        other jobs meanwhile) until ``data_wait_s`` after its first start; then it ends
        SKIPPED, says why in ``TrainingSkipped`` and a metric, and the next alarm starts over."""
        started = job.started_at or self._clock()
        waited = max(0.0, (self._clock() - started).total_seconds())
        if waited < self._options.data_wait_s:
            job = self._store.update(
                job.job_id,
                state=JobState.QUEUED,
                message=(
                    f"waiting for labelled data in its window from {wait.window.start.isoformat()}: "
                    f"{wait.rows} of {wait.needed} rows (waited {waited:.0f}s of "
                    f"{self._options.data_wait_s:.0f}s)"
                ),
            )
            asyncio.get_running_loop().call_later(self._options.data_poll_s, self._requeue, job.job_id)
            return job
        message = (
            f"gave up after {waited:.0f}s: {wait.rows} of {wait.needed} labelled rows in its window "
            f"from {wait.window.start.isoformat()} (the change point) to the holdout cut"
        )
        log.warning("job %s: %s", job.job_id, message)
        skipped_at = self._clock()
        # Published before the job is final: a crash in between gives up again, not silently.
        await self._publisher.training_skipped(
            SkippedTraining(
                job,
                code="insufficient_data",
                message=message,
                labelled_rows=wait.rows,
                needed_rows=wait.needed,
                window=wait.window,
                waited_s=waited,
                skipped_at=skipped_at,
            )
        )
        self.scheduler.gave_up(job.use_case, job.job_id)
        job = self._store.update(job.job_id, state=JobState.SKIPPED, message=message, finished_at=skipped_at)
        self._count(job.use_case, "gave_up")
        if self._metrics is not None:
            self._metrics.gave_up(job.use_case, "insufficient_data")
        return job

    def _requeue(self, job_id: str) -> None:
        if not self._stopping.is_set():  # a stopped service finds the QUEUED job at its next start
            self._queue.put_nowait(job_id)

    async def _training_frame(
        self, job: Job, uc: UseCase, config: TrainConfig
    ) -> tuple[TrainingSet, pd.DataFrame, Window]:
        """The job's training rows. A job with its own window (a drift retraining, from the
        change point on) needs that window to hold enough labelled rows to train while the
        newest ``holdout`` stays the evaluator's; until then it raises ``_WaitingForData``
        (with late outcomes the holdout cut can still lie before the change point)."""
        needed = config.labelled_rows_needed
        training_set = await self._retrying(
            "feature store", lambda: self._data.get_training_set(uc.name, None)
        )
        if training_set.quarantined_total:
            log.warning(
                "job %s: the feature store quarantined labels it could not join: %s",
                job.job_id,
                training_set.quarantined,
            )
        if job.window is None:
            window = plan_windows(training_set.frame, uc).training
            return training_set, select(training_set.frame, window), window
        if labelled(training_set.frame).empty:
            raise _WaitingForData(job.window, 0, needed)
        cut = plan_windows(training_set.frame, uc).training.end
        # An explicit window is honoured, but never into the evaluator's holdout.
        window = Window(job.window.start, max(job.window.start, min(job.window.end, cut)))
        frame = select(training_set.frame, window)
        rows = len(labelled(frame))
        if rows < needed:
            raise _WaitingForData(window, rows, needed)
        return training_set, frame, window

    async def _train_and_register(
        self, job: Job, uc: UseCase, config: TrainConfig, seed: int, run_id: str
    ) -> Job:
        training_set, frame, window = await self._training_frame(job, uc, config)
        await self._retrying(
            "registry",
            lambda: self._registry.create_run(
                RunSpec(
                    run_id=run_id,
                    use_case=uc.name,
                    model_name=model_name_of(uc),
                    training_request_id=job.job_id,
                    seed=seed,
                    params=config.as_params(),
                    code_version=self._code_version,
                    environment=environment(config.threads),
                    drift_report_id=job.drift_report_id,
                    datasets=training_set.datasets,
                    features=training_set.features,
                )
            ),
        )
        self._store.update(job.job_id, window=window, message=f"training on {len(frame)} rows")

        loop = asyncio.get_running_loop()

        def on_epoch(m: EpochMetrics) -> None:  # in the worker thread
            if self._stopping.is_set():
                raise _Abandoned(job.job_id)  # the service stops: end the thread at this epoch
            loop.call_soon_threadsafe(self._epoch_done, job.job_id, uc.name, run_id, m)

        result: TrainResult = await loop.run_in_executor(
            self._executor, functools.partial(train, frame, uc, config, seed=seed, on_epoch=on_epoch)
        )
        if self._log_tasks:
            await asyncio.gather(*self._log_tasks, return_exceptions=True)

        final = [MetricPoint(name, value, "validation") for name, value in sorted(result.metrics.items())]
        final.append(MetricPoint("samples_per_s", result.samples_per_s, "train"))
        # What the training set left out, with the run (split "data"): labels the store
        # could not join to a feature row of their own, by reason.
        quarantine = [
            MetricPoint(f"quarantined_labels.{reason}", float(count), "data")
            for reason, count in sorted(training_set.quarantined.items())
        ]
        if self._metrics is not None:
            for reason, count in training_set.quarantined.items():
                self._metrics.quarantined(uc.name, reason, count)
        registered = await self._retrying(
            "registry",
            lambda: self._registry.register_version(
                result.artifact,
                result.reference,
                Lineage(
                    use_case=uc.name,
                    model_name=model_name_of(uc),
                    run_id=run_id,
                    training_request_id=job.job_id,
                    task=uc.task,
                    input_names=uc.model_inputs(),
                    output_names=class_names(uc) or [uc.label.field],
                    code_version=self._code_version,
                    seed=seed,
                    datasets=training_set.datasets,
                    features=training_set.features,
                    metrics=final,
                    params=config.as_params(),
                    drift_report_id=job.drift_report_id,
                    idempotency_key=job.job_id,
                ),
            ),
        )
        try:
            await self._retrying(
                "registry",
                lambda: self._registry.finish_run(
                    run_id,
                    metrics=final + quarantine,
                    datasets=training_set.datasets,
                    features=training_set.features,
                    duration_s=result.duration_s,
                ),
            )
        except FailedPrecondition as exc:  # a re-run after a restart: the run was closed before the crash
            log.warning("job %s: run %s already closed, keeping it: %s", job.job_id, run_id, exc.message)
        trained_at = self._clock()
        # Published before the job is final: a crash in between re-runs the job, not loses the event.
        await self._publisher.model_trained(
            TrainedModel(
                job,
                registered,
                run_id=run_id,
                window=window,
                metrics=tuple(final),
                datasets=tuple(training_set.datasets),
                features=tuple(training_set.features),
                code_version=self._code_version,
                seed=seed,
                params=config.as_params(),
                trained_at=trained_at,
            )
        )
        epochs = tuple(self._store.get(job.job_id).metrics)
        job = self._store.update(
            job.job_id,
            state=JobState.SUCCEEDED,
            model=registered.ref,
            finished_at=trained_at,
            artifact_sha256=registered.artifact_sha256,
            artifact_uri=registered.artifact_uri,
            metrics=epochs + tuple(final),
            message=f"registered {registered.ref} (best epoch {result.best_epoch} of {len(result.epochs)})",
        )
        log.info("job %s: %s", job.job_id, job.message)
        self._count(uc.name, "succeeded")
        if self._metrics is not None:
            self._metrics.duration(uc.name, result.duration_s)
        return job

    def _epoch_done(self, job_id: str, use_case: str, run_id: str, m: EpochMetrics) -> None:
        """On the event loop, once per epoch: job progress, metrics, and the run's curve."""
        points = (
            MetricPoint("train_loss", m.train_loss, "train", m.epoch),
            MetricPoint("val_loss", m.val_loss, "validation", m.epoch),
            MetricPoint(
                f"val_{self._usecases[use_case].evaluation.metric}", m.val_metric, "validation", m.epoch
            ),
            MetricPoint("samples_per_s", m.samples_per_s, "train", m.epoch),
        )
        job = self._store.get(job_id)
        self._store.update(job_id, metrics=job.metrics + points, message=f"epoch {m.epoch}")
        if self._metrics is not None:
            rows = int(m.samples_per_s * m.seconds)
            self._metrics.epoch(
                use_case,
                samples=rows,
                samples_per_s=m.samples_per_s,
                train_loss=m.train_loss,
                val_loss=m.val_loss,
            )
        task = asyncio.ensure_future(self._log_run_metrics(run_id, points))
        self._log_tasks.add(task)
        task.add_done_callback(self._log_tasks.discard)

    async def _log_run_metrics(self, run_id: str, points: tuple[MetricPoint, ...]) -> None:
        try:
            await self._registry.log_metrics(run_id, points)
        except Exception as exc:  # noqa: BLE001 - the curve is best effort; final metrics are not
            log.warning("run %s: could not log epoch metrics: %s", run_id, exc)
