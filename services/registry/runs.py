"""Experiment tracking: runs with their parameters, environment, data and per-epoch metrics.

Creating and finishing a run are state changes and go to the audit log; per-epoch
metrics are measurements and do not (they are many, and upserted per step).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from libs.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from libs.rpc.auth import Principal
from libs.usecase import UseCases
from services.registry import policy, validate
from services.registry.domain import (
    SYSTEM,
    Actor,
    AuditDraft,
    DatasetRef,
    FeatureRef,
    Metric,
    NewRun,
    Run,
    RunStatus,
)
from services.registry.store import RegistryStore


@dataclass
class RunTracker:
    store: RegistryStore
    usecases: UseCases
    clock: Callable[[], datetime]

    def _actor(self, principal: Principal | None, use_case: str) -> Actor:
        if principal is None:
            return SYSTEM
        return Actor(principal.subject, tuple(sorted(principal.roles_in(use_case))))

    def create(self, new: NewRun, principal: Principal | None) -> Run:
        """Idempotent by a client-chosen ``run_id``; otherwise the registry picks one."""
        validate.use_case(new.use_case)
        self.usecases.require(new.use_case)
        validate.model_name(new.model_name or new.use_case)
        run_id = validate.ident(new.run_id, "run_id", required=False) or uuid.uuid4().hex
        if principal is not None:
            policy.require_scope(principal, new.use_case)
        if not new.model_name:
            new = NewRun(**{**new.__dict__, "model_name": new.use_case})
        actor = self._actor(principal, new.use_case)
        with self.store.write() as tx:
            existing = tx.get_run(run_id)
            if existing is not None:
                if existing.use_case != new.use_case or existing.model_name != new.model_name:
                    raise AlreadyExists(f"run {run_id} exists for {existing.use_case}/{existing.model_name}")
                return existing
            run = tx.add_run(new, run_id, actor, self.clock())
            now = self.clock()
            tx.append_audit(
                AuditDraft(
                    action="run.created",
                    actor=actor,
                    use_case=new.use_case,
                    model_name=new.model_name,
                    reason="training run started",
                    evidence_ids=(new.training_request_id, new.drift_report_id),
                    details={
                        "run_id": run_id,
                        "params": dict(new.params),
                        "environment": dict(new.environment),
                        "code_version": new.code_version,
                        "seed": new.seed,
                        "training_request_id": new.training_request_id,
                    },
                ),
                int(now.timestamp() * 1_000_000),
            )
        return run

    def get(self, run_id: str) -> Run:
        validate.ident(run_id, "run_id")
        with self.store.read() as tx:
            run = tx.get_run(run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        return run

    def log_metrics(self, run_id: str, metrics: Sequence[Metric]) -> int:
        validate.ident(run_id, "run_id")
        validate.metrics(metrics)
        return self.store.log_metrics(run_id, metrics, self.clock())

    def finish(
        self,
        run_id: str,
        principal: Principal | None,
        *,
        status: RunStatus = RunStatus.FINISHED,
        error: str = "",
        metrics: Sequence[Metric] = (),
        datasets: Sequence[DatasetRef] = (),
        features: Sequence[FeatureRef] = (),
        duration_s: float | None = None,
    ) -> Run:
        """Idempotent: finishing a finished run with the same status returns it unchanged."""
        if status is RunStatus.RUNNING:
            raise InvalidArgument("status", "a run finishes as FINISHED or FAILED")
        if duration_s is not None and duration_s < 0:
            raise InvalidArgument("duration_s", "must not be negative")
        run = self.get(run_id)
        if run.status is not RunStatus.RUNNING:
            if run.status is status:
                return run
            raise FailedPrecondition(f"run {run_id} is already {run.status.value}")
        if metrics:
            self.log_metrics(run_id, metrics)
        actor = self._actor(principal, run.use_case)
        with self.store.write() as tx:
            current = tx.get_run(run_id)
            assert current is not None
            if current.status is not RunStatus.RUNNING:
                raise FailedPrecondition(f"run {run_id} is already {current.status.value}")
            now = self.clock()
            tx.finish_run(run_id, status, error, now, duration_s, datasets, features)
            tx.append_audit(
                AuditDraft(
                    action=f"run.{status.value}",
                    actor=actor,
                    use_case=run.use_case,
                    model_name=run.model_name,
                    reason=error or f"training run {status.value}",
                    details={
                        "run_id": run_id,
                        "duration_s": duration_s,
                        "datasets": [d.version for d in datasets],
                    },
                ),
                int(now.timestamp() * 1_000_000),
            )
            done = tx.get_run(run_id)
        assert done is not None
        return done
