"""When a training request becomes a training: debounce, cooldown and a daily budget per use case.

Pure logic with an injectable clock; the service persists jobs and asks this object
what to do with each request. The rules, per use case:

Automatic requests (drift, schedule):
1. A request while one is already waiting is *coalesced* into it (skipped, naming it).
2. A request while a training runs is skipped: that training already uses the newest data.
3. A request within ``retraining.cooldown`` after a training finished is skipped: the
   monitor keeps alarming about the old version until the new one serves, and that is
   not new evidence. Evidence about the newest trained version is new: it waits for
   the end of the cooldown instead.
4. A request when the budget is spent (``retraining.max_per_day`` trainings started,
   queued or waiting in the last 24 hours) is skipped.
5. Otherwise it waits ``retraining.debounce`` (collecting the rest of the storm), then
   runs unless, by then, rules 2–4 say otherwise.

Manual requests (a person, through the CLI or the API) skip the debounce and the
cooldown — someone asked on purpose — but not the budget, which bounds the compute
any caller can spend. They queue behind a running training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from libs.usecase.model import RetrainingSpec

DAY = timedelta(days=1)


class Action(StrEnum):
    RUN = "run"  # queue it now
    DEFER = "defer"  # wait until ``due_at`` (debounce), then ask :meth:`RetrainScheduler.due`
    SKIP = "skip"  # do not train; ``reason`` says why


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    due_at: datetime | None = None
    # The job this request was coalesced into, for a debounced request.
    into: str | None = None


@dataclass
class _UseCaseState:
    pending: tuple[str, datetime] | None = None
    queued: set[str] = field(default_factory=set)
    running: str | None = None
    last_finished: datetime | None = None
    # job id → start time, so a job re-run after a restart counts once.
    starts: dict[str, datetime] = field(default_factory=dict)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RetrainScheduler:
    def __init__(
        self, policy: Callable[[str], RetrainingSpec], clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._state: dict[str, _UseCaseState] = {}

    def _of(self, use_case: str) -> _UseCaseState:
        return self._state.setdefault(use_case, _UseCaseState())

    def _used(self, state: _UseCaseState, now: datetime) -> int:
        recent = sum(1 for t in state.starts.values() if now - t < DAY)
        return recent + len(state.queued) + (1 if state.pending else 0)

    def _blocked(self, use_case: str, state: _UseCaseState, now: datetime, *, extra: int = 0) -> str | None:
        """Why an automatic training may not start now (rules 2–4), or None."""
        spec = self._policy(use_case)
        if state.running is not None:
            return f"training in progress (job {state.running})"
        if state.last_finished is not None and now < state.last_finished + spec.cooldown:
            return f"cooldown until {(state.last_finished + spec.cooldown).isoformat()}"
        return self._over_budget(spec, state, now, extra)

    def _over_budget(
        self, spec: RetrainingSpec, state: _UseCaseState, now: datetime, extra: int
    ) -> str | None:
        if self._used(state, now) + extra >= spec.max_per_day:
            return f"retrain budget spent ({spec.max_per_day} per day)"
        return None

    # -- requests -------------------------------------------------------------------

    def request(self, use_case: str, job_id: str, *, manual: bool, fresh_evidence: bool = False) -> Decision:
        """Decide what to do with a new request (see the module docstring).

        ``fresh_evidence``: the request's evidence is about the newest trained model
        (not about one a training has since replaced), so a cooldown defers it rather
        than skipping it."""
        now = self._clock()
        state = self._of(use_case)
        spec = self._policy(use_case)
        if manual:
            reason = self._over_budget(spec, state, now, 0)
            if reason:
                return Decision(Action.SKIP, reason)
            state.queued.add(job_id)
            return Decision(Action.RUN, "manual")
        if state.pending is not None:
            return Decision(
                Action.SKIP, f"coalesced into job {state.pending[0]} (debounce)", into=state.pending[0]
            )
        reason = self._blocked(use_case, state, now)
        cooldown_end = state.last_finished + spec.cooldown if state.last_finished is not None else None
        if (
            reason
            and fresh_evidence
            and state.running is None
            and cooldown_end is not None
            and now < cooldown_end
            and self._over_budget(spec, state, now, 0) is None
        ):
            # Evidence against the newest model is not the storm rule 3 swallows: it waits
            # for the cooldown to end instead of being dropped.
            due_at = max(now + spec.debounce, cooldown_end)
            state.pending = (job_id, due_at)
            return Decision(
                Action.DEFER, f"new evidence in cooldown: waits until {due_at.isoformat()}", due_at=due_at
            )
        if reason:
            return Decision(Action.SKIP, reason)
        due_at = now + spec.debounce
        state.pending = (job_id, due_at)
        return Decision(Action.DEFER, f"debounce until {due_at.isoformat()}", due_at=due_at)

    def due(self) -> list[tuple[str, str, Decision]]:
        """Waiting requests whose debounce is over: each now runs or is skipped."""
        now = self._clock()
        out = []
        for use_case, state in self._state.items():
            if state.pending is None or state.pending[1] > now:
                continue
            job_id, _ = state.pending
            state.pending = None
            reason = self._blocked(use_case, state, now)
            if reason:
                out.append((use_case, job_id, Decision(Action.SKIP, reason)))
            else:
                state.queued.add(job_id)
                out.append((use_case, job_id, Decision(Action.RUN, "debounce over")))
        return out

    def next_due(self) -> datetime | None:
        times = [s.pending[1] for s in self._state.values() if s.pending is not None]
        return min(times) if times else None

    # -- what happened --------------------------------------------------------------

    def started(self, use_case: str, job_id: str) -> None:
        state = self._of(use_case)
        state.queued.discard(job_id)
        state.running = job_id
        state.starts.setdefault(job_id, self._clock())

    def finished(self, use_case: str, job_id: str) -> None:
        state = self._of(use_case)
        if state.running == job_id:
            state.running = None
        state.queued.discard(job_id)
        state.last_finished = self._clock()
        now = self._clock()
        state.starts = {j: t for j, t in state.starts.items() if now - t < DAY}

    def gave_up(self, use_case: str, job_id: str) -> None:
        """A started job that ended without training (no data after its change point): it
        neither starts a cooldown nor spends the budget, so the next alarm starts over."""
        state = self._of(use_case)
        if state.running == job_id:
            state.running = None
        state.queued.discard(job_id)
        state.starts.pop(job_id, None)

    def dropped(self, use_case: str, job_id: str) -> None:
        """A queued or waiting request that will not run after all (it failed before starting)."""
        state = self._of(use_case)
        state.queued.discard(job_id)
        if state.pending is not None and state.pending[0] == job_id:
            state.pending = None

    # -- after a restart ------------------------------------------------------------

    def restore(
        self,
        use_case: str,
        job_id: str,
        *,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        due_at: datetime | None = None,
        queued: bool = False,
    ) -> None:
        """Rebuild state from persisted jobs (oldest first): starts for the budget, the
        last finish for the cooldown, the waiting and queued requests."""
        state = self._of(use_case)
        if started_at is not None and self._clock() - started_at < DAY:
            state.starts[job_id] = started_at
        if finished_at is not None and (state.last_finished is None or finished_at > state.last_finished):
            state.last_finished = finished_at
        if due_at is not None and not queued:
            state.pending = (job_id, due_at)
        elif queued:
            state.queued.add(job_id)
