"""The monitor's logic: predictions, outcomes and alias changes in, effects out.

:class:`MonitorCore` does no I/O: it turns each decoded event into the :class:`Effects`
it produces (reports, alerts, state, events to publish); tests and the benchmark drive
it directly. Per use case a :class:`Joiner` pairs outcomes with predictions; per served
model version a :class:`VersionTracker` keeps windows, detectors and alarm episodes.
:class:`Monitor` runs it in the service: it fetches each version's training reference,
and saves every event's effects with the events they publish in one transaction (the
store's outbox, published by :class:`libs.bus.outbox.OutboxRelay`), together with the event
itself (the journal, :mod:`services.monitor.journal`), so a crash loses no state.

Rollback after a promotion: when ``champion`` moves from version M to N, a *watch* on N
starts. At each quality window of N (``max(drift.window, drift.min_samples)`` labelled
predictions) N's live value of the spec's evaluation metric is compared with M's over
its last labelled predictions before the switch (M's labels keep arriving after it). A
loss beyond ``deployment.rollback_margin`` in ``drift.hysteresis`` consecutive windows
requests a rollback (once: the request id names the version); as many windows without
it end the watch ("kept").
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from libs.errors import AlreadyExists, Unavailable
from libs.retry import Backoff, RetryPolicy
from libs.usecase import UseCase, UseCases
from services.monitor import journal
from services.monitor.domain import (
    CHAMPION,
    Alert,
    AliasKind,
    AliasMove,
    Effects,
    Labelled,
    Outcome,
    Prediction,
    RollbackRequest,
    Severity,
    VersionKey,
)
from services.monitor.join import Joiner
from services.monitor.journal import Entry
from services.monitor.quality import primary_metric, rollback_verdict
from services.monitor.tracker import VersionTracker, id_stem, state_key

if TYPE_CHECKING:
    from services.monitor.instruments import MonitorMetrics
    from services.monitor.references import ReferenceSource

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class Watch:
    """The new champion ``new`` under watch against the previous one, ``old``."""

    use_case: str
    model_name: str
    new: int
    old: int
    state: str = "watching"  # watching | rolled_back | kept | no_baseline
    over: int = 0
    under: int = 0
    checks: int = 0
    last: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"watch:{self.use_case}/{self.model_name}/v{self.new}"


class MonitorCore:
    def __init__(
        self,
        usecases: Mapping[str, UseCase],
        *,
        capacity: int = 200_000,
        clock: Callable[[], datetime] = utcnow,
        saved: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        # Its own set, kept by take_up and drop as the catalogue changes.
        self.usecases = UseCases(usecases)
        self.clock = clock
        self._capacity = capacity
        self.joiners = {name: Joiner(uc.label.max_delay, capacity) for name, uc in self.usecases.items()}
        self.trackers: dict[VersionKey, VersionTracker] = {}
        self._saved = dict(saved or {})
        self.watches: dict[tuple[str, str, int], Watch] = {}
        # (use case, model) → the version champion points at, from the alias events; it
        # decides which tracker is champion when predictions of both arrive around a switch.
        self.champions: dict[tuple[str, str], int] = {}
        for key, value in self._saved.items():
            if key.startswith("watch:"):
                w = Watch(**value)
                self.watches[(w.use_case, w.model_name, w.new)] = w
            elif key.startswith("champion:"):
                self.champions[(str(value["use_case"]), str(value["model_name"]))] = int(value["version"])
        self.shadow_ignored = 0

    def usecase(self, name: str) -> UseCase:
        """The spec of ``name``; :class:`~libs.usecase.UnknownUseCase` if there is none."""
        return self.usecases.require(name)

    def take_up(self, uc: UseCase) -> None:
        """Monitor a use case applied while running: a new one gets its joiner; for a new
        version, joins wait its ``label.max_delay`` and the trackers of its model versions
        check its drift thresholds from their next window on (their window size and burn-in
        stay those they started with)."""
        joiner = self.joiners.get(uc.name)
        if joiner is None:
            self.joiners[uc.name] = Joiner(uc.label.max_delay, self._capacity)
        else:
            joiner.max_delay = uc.label.max_delay
        for key, tracker in self.trackers.items():
            if key.use_case == uc.name:
                tracker.uc = uc
        self.usecases[uc.name] = uc

    def drop(self, name: str) -> None:
        """A retired use case: its events are refused from now on (its state is kept)."""
        self.usecases.pop(name, None)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """All the in-memory state, as JSON (see :mod:`services.monitor.journal`)."""
        return {
            "joiners": {name: j.checkpoint() for name, j in self.joiners.items()},
            "trackers": [[journal.key_doc(k), t.checkpoint()] for k, t in self.trackers.items()],
            "watches": [dataclasses.asdict(w) for w in self.watches.values()],
            "champions": [[uc, model, version] for (uc, model), version in self.champions.items()],
            # Saved states of versions not seen since the start (their trackers come later).
            "saved": {k: v for k, v in self._saved.items() if k.startswith("version:")},
            "shadow_ignored": self.shadow_ignored,
        }

    def forget_saved(self) -> None:
        """Start from nothing rather than from the saved states (newer than a journal that
        is about to be applied from its beginning)."""
        self._saved.clear()
        self.watches.clear()
        self.champions.clear()

    def resume(self, saved: Mapping[str, Any]) -> None:
        """Take back what :meth:`checkpoint` wrote (a use case no longer served is left out);
        it replaces the saved states, which may be newer than it."""
        self.forget_saved()
        self._saved.update(saved["saved"])
        for doc in saved["watches"]:
            w = Watch(**doc)
            self.watches[(w.use_case, w.model_name, w.new)] = w
        for uc, model, version in saved["champions"]:
            self.champions[(uc, model)] = int(version)
        for name, doc in saved["joiners"].items():
            if name in self.joiners:
                self.joiners[name].restore(doc)
        for key_doc, doc in saved["trackers"]:
            key = journal.key_of(key_doc)
            if key.use_case in self.usecases:
                tracker = self.trackers[key] = VersionTracker(key, self.usecase(key.use_case), self.clock)
                tracker.resume(doc)
        self.shadow_ignored = int(saved["shadow_ignored"])

    # ------------------------------------------------------------------ references
    def has_tracker(self, key: VersionKey) -> bool:
        return key in self.trackers

    def tracker(self, key: VersionKey) -> VersionTracker:
        tracker = self.trackers.get(key)
        if tracker is None:
            tracker = VersionTracker(
                key, self.usecase(key.use_case), self.clock, self._saved.pop(state_key(key), None)
            )
            self.trackers[key] = tracker
        return tracker

    def set_reference(self, key: VersionKey, reference: Mapping[str, Any] | None) -> None:
        """The training reference of ``key`` (None: none known; distribution checks skipped)."""
        self.tracker(key).reference = reference

    # ------------------------------------------------------------------ events
    def on_prediction(self, p: Prediction, *, shadow: bool = False) -> Effects:
        effects = Effects()
        self.usecase(p.model.use_case)
        if shadow:
            # A shadow prediction was not served: it says nothing about the champion.
            self.shadow_ignored += 1
            return effects
        joiner = self.joiners[p.model.use_case]
        if joiner.known(p.prediction_id):
            # Logged again (a gateway replaying its log after a crash): it was counted once.
            joiner.counts.duplicates += 1
            return effects
        tracker = self.tracker(p.model)
        champion = self.champions.get((p.model.use_case, p.model.model_name))
        if champion is not None and p.alias == CHAMPION and p.model.version != champion:
            # Served before the switch, read after it: it no longer makes this version champion.
            p = dataclasses.replace(p, alias="previous")
        tracker.on_prediction(p, effects)
        labelled = joiner.add_prediction(p)
        if labelled is not None:
            self._labelled(labelled, effects)
        return effects

    def on_outcome(self, o: Outcome) -> Effects:
        effects = Effects()
        self.usecase(o.use_case)
        labelled = self.joiners[o.use_case].add_outcome(o)
        if labelled is not None:
            self._labelled(labelled, effects)
        return effects

    def _labelled(self, item: Labelled, effects: Effects) -> None:
        tracker = self.tracker(item.prediction.model)
        windows = tracker.quality_windows
        tracker.on_labelled(item, effects)
        if tracker.quality_windows != windows:
            self._check_watch(tracker, effects)

    def on_alias(self, move: AliasMove) -> Effects:
        effects = Effects()
        if move.alias != CHAMPION or move.use_case not in self.usecases:
            return effects
        if self.champions.get((move.use_case, move.model_name)) != move.new_version:
            self.champions[(move.use_case, move.model_name)] = move.new_version
            effects.states[f"champion:{move.use_case}/{move.model_name}"] = {
                "use_case": move.use_case,
                "model_name": move.model_name,
                "version": move.new_version,
            }
        old = VersionKey(move.use_case, move.model_name, move.old_version)
        tracker = self.trackers.get(old)
        if move.old_version != move.new_version and tracker is not None and tracker.alias == CHAMPION:
            # The old champion no longer serves: its open episode ends with it (until a
            # prediction served by it again, after a rollback, makes it champion again).
            tracker.alias = "previous"
            tracker.close_episode(effects, reset=True)
        for key, watch in list(self.watches.items()):
            if (
                key[:2] == (move.use_case, move.model_name)
                and watch.state == "watching"
                and watch.new != move.new_version
            ):
                watch.state = "replaced"
                effects.states[watch.key] = dataclasses.asdict(watch)
        if (
            move.kind in (AliasKind.PROMOTE, AliasKind.SET)
            and move.old_version
            and move.new_version
            and move.new_version != move.old_version
        ):
            key3 = (move.use_case, move.model_name, move.new_version)
            if key3 not in self.watches:
                watch = Watch(move.use_case, move.model_name, move.new_version, move.old_version)
                self.watches[key3] = watch
                effects.states[watch.key] = dataclasses.asdict(watch)
                log.info(
                    "watching %s/%s v%d against v%d after its promotion",
                    move.use_case,
                    move.model_name,
                    move.new_version,
                    move.old_version,
                )
        return effects

    # ------------------------------------------------------------------ rollback
    def _check_watch(self, tracker: VersionTracker, effects: Effects) -> None:
        key = tracker.key
        watch = self.watches.get((key.use_case, key.model_name, key.version))
        if watch is None or watch.state != "watching":
            return
        uc = tracker.uc
        metric = primary_metric(uc)
        live = tracker.last_quality.get(metric)
        previous = self.trackers.get(VersionKey(key.use_case, key.model_name, watch.old))
        before, n_before = previous.quality_of_recent() if previous is not None else ({}, 0)
        watch.checks += 1
        if live is None or metric not in before or n_before < uc.drift.min_samples:
            if watch.checks > uc.drift.hysteresis + 2:
                watch.state = "no_baseline"
                log.warning(
                    "%s: no live %s of v%d from before the switch to compare with; watch ended",
                    key,
                    metric,
                    watch.old,
                )
            effects.states[watch.key] = dataclasses.asdict(watch)
            return
        verdict = rollback_verdict(metric, before[metric], live, uc.deployment.rollback_margin)
        watch.last = {"before": verdict.before, "after": verdict.after, "loss": verdict.loss}
        if verdict.worse:
            watch.over, watch.under = watch.over + 1, 0
        else:
            watch.over, watch.under = 0, watch.under + 1
        if watch.over >= uc.drift.hysteresis:
            watch.state = "rolled_back"
            now = self.clock()
            reason = (
                f"live {metric} of v{key.version} is {verdict.after:.4f}, v{watch.old} had "
                f"{verdict.before:.4f} before the switch: a loss of {verdict.loss:.4f} beyond the "
                f"rollback margin {verdict.margin} in {watch.over} consecutive windows"
            )
            request_id = f"rollback.{id_stem(key)}"
            report_id = next((r.report_id for r in reversed(effects.reports) if r.model == key), "")
            effects.rollbacks.append(
                RollbackRequest(request_id, key, CHAMPION, reason, (report_id,) if report_id else (), now)
            )
            effects.alerts.append(
                Alert(f"alert.{request_id}", key, Severity.CRITICAL, "rollback", reason, report_id, now)
            )
            log.warning("%s: requesting a rollback: %s", key, reason)
        elif watch.under >= uc.drift.hysteresis:
            watch.state = "kept"
            log.info(
                "%s: live %s holds after the promotion (%.4f vs %.4f): kept",
                key,
                metric,
                verdict.after,
                verdict.before,
            )
        effects.states[watch.key] = dataclasses.asdict(watch)


class EffectStore(Protocol):
    """Where :class:`Monitor` saves effects (:class:`services.monitor.store.MonitorStore`)."""

    def commit(self, effects: Effects, now: datetime, journal: Sequence[Entry] = ()) -> None: ...

    def checkpoint(self, state: Mapping[str, Any], now: datetime) -> int: ...


# Event ids remembered as applied: more than the consumer can have handled and not yet
# committed to Kafka (one polled batch per partition), so a redelivery is always known.
APPLIED_MEMORY = 20_000


class Monitor:
    """:class:`MonitorCore` at work in the service.

    Before a version's first served prediction is judged, its training reference is
    fetched (again after ``reference_retry_s`` while the registry is unreachable).

    Nothing lives only in memory: each event (``on_prediction``, ``on_outcome``,
    ``on_alias`` with its bus event id) is journaled in the transaction that saves its
    effects, before the handler returns, so before the consumer commits its offset; every
    ``checkpoint_every`` entries (or more, as many as the joins waiting: the amortised
    cost of a checkpoint stays one write per event) the whole state replaces the journal.
    :meth:`resume` rebuilds the state after a crash. While the database is down the
    event's effects and entry wait in memory, in order, and the handler raises
    ``Unavailable``: the consumer retries the event (found applied, only saved) and
    commits nothing past it, so a crash then loses nothing either. ``on_outbox`` is called
    when an alarm or a rollback request has been saved (the relay's ``kick``).
    """

    def __init__(
        self,
        core: MonitorCore,
        store: EffectStore,
        references: ReferenceSource,
        *,
        metrics: MonitorMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        reference_retry_s: float = 30.0,
        on_outbox: Callable[[], None] | None = None,
        checkpoint_every: int = 5000,
    ) -> None:
        self.core = core
        self.clock = clock
        self.on_outbox = on_outbox
        self._store = store
        self._references = references
        self._metrics = metrics
        self._retry_s = reference_retry_s
        self._resolved: set[VersionKey] = set()
        self._retry_at: dict[VersionKey, float] = {}
        # Per version: the backoff of its reference fetches (1 s, doubling up to
        # reference_retry_s, with jitter), never given up: distribution checks wait for it.
        self._reference_backoff: dict[VersionKey, Backoff] = {}
        self._unsaved = Effects()
        self._unsaved_entries: list[Entry] = []
        self._applied: OrderedDict[str, None] = OrderedDict()
        self._checkpoint_every = checkpoint_every
        self.journaled = 0  # entries since the last checkpoint
        self.redelivered = 0  # events skipped: applied before (a crash, a retry)
        # One commit at a time, so a retried batch never lands after a newer one.
        self._saving = asyncio.Lock()

    def usecase(self, name: str) -> UseCase:
        return self.core.usecase(name)

    async def on_prediction(self, p: Prediction, *, shadow: bool = False, event_id: str = "") -> None:
        if event_id in self._applied:
            return await self._redelivered()
        if not shadow:
            await self._ensure_reference(p.model)
        entry = Entry(event_id, journal.SHADOW if shadow else journal.PREDICTION, journal.prediction_doc(p))
        await self._event(entry, self.core.on_prediction(p, shadow=shadow))

    async def on_outcome(self, o: Outcome, *, event_id: str = "") -> None:
        if event_id in self._applied:
            return await self._redelivered()
        await self._event(Entry(event_id, journal.OUTCOME, journal.outcome_doc(o)), self.core.on_outcome(o))

    async def on_alias(self, move: AliasMove, *, event_id: str = "") -> None:
        if event_id in self._applied:
            return await self._redelivered()
        await self._event(Entry(event_id, journal.ALIAS, journal.alias_doc(move)), self.core.on_alias(move))

    async def _redelivered(self) -> None:
        self.redelivered += 1
        if not await self._save():
            raise Unavailable("monitor store unavailable: the event's effects are not saved yet")

    async def _event(self, entry: Entry, effects: Effects) -> None:
        """Journal and save what one event did; ``Unavailable`` when it could not be saved."""
        if not entry.event_id:
            # Not from the bus (tests, tools): nothing to journal or to deduplicate.
            return await self.apply(effects)
        self._applied[entry.event_id] = None
        if len(self._applied) > APPLIED_MEMORY:
            self._applied.popitem(last=False)
        self._unsaved_entries.append(entry)
        self.journaled += 1
        await self.apply(effects, always=True)
        if self._unsaved_entries:
            raise Unavailable("monitor store unavailable: the event is kept in memory until it is saved")
        if self.journaled >= max(
            self._checkpoint_every, sum(sum(j.waiting) for j in self.core.joiners.values())
        ):
            await self.checkpoint()

    async def apply(self, effects: Effects, *, always: bool = False) -> None:
        """Record and save ``effects`` (kept for the next commit when the database is down)."""
        if not effects and not always:
            return
        if self._metrics is not None:
            self._metrics.record(effects)
        self._unsaved.merge(effects)
        if await self._save() and (effects.alarms or effects.rollbacks) and self.on_outbox is not None:
            self.on_outbox()

    async def save(self) -> None:
        """Commit what a database outage left unsaved (the relay's ``before_flush``)."""
        await self._save()

    async def _save(self) -> bool:
        async with self._saving:
            if not self._unsaved and not self._unsaved_entries:
                return True
            batch, self._unsaved = self._unsaved, Effects()
            entries, self._unsaved_entries = self._unsaved_entries, []
            try:
                await asyncio.to_thread(self._store.commit, batch, self.clock(), entries)
            except (Unavailable, AlreadyExists) as exc:
                # Kept (in order) for the next commit, which finds the rows a racing
                # writer added; the consumer carries on.
                self._unsaved = batch.merge(self._unsaved)
                self._unsaved_entries = entries + self._unsaved_entries
                log.error(
                    "monitor store unavailable (%s); %d events and %d reports waiting",
                    exc,
                    len(self._unsaved_entries),
                    len(self._unsaved.reports),
                )
                return False
            return True

    async def checkpoint(self) -> None:
        """Save the whole state and drop the journal it covers (skipped, and tried again
        later, while something is unsaved or the database is down)."""
        async with self._saving:
            if self._unsaved or self._unsaved_entries:
                return
            state = {"core": self.core.checkpoint(), "applied": list(self._applied)}
            try:
                covered = await asyncio.to_thread(self._store.checkpoint, state, self.clock())
            except Unavailable as exc:
                log.warning("monitor checkpoint not saved (%s); the journal keeps growing", exc)
                return
            self.journaled = 0
            log.info("monitor checkpoint saved (%d journal entries covered)", covered)

    async def resume(self, checkpoint: Mapping[str, Any] | None, entries: Sequence[Entry]) -> None:
        """Rebuild the state a previous run had: ``checkpoint`` and the ``entries`` journaled
        after it (from :meth:`~services.monitor.store.MonitorStore.recovery`). Their effects,
        saved before, are saved again (writes are idempotent by id)."""
        if checkpoint is not None:
            self.core.resume(checkpoint["core"])
            self._applied = OrderedDict.fromkeys(checkpoint["applied"])
        elif entries:
            # A journal from its very first entry (no checkpoint was ever saved): it alone
            # builds the state.
            self.core.forget_saved()
        for key in list(self.core.trackers):
            await self._ensure_reference(key)
        effects = Effects()
        for entry in entries:
            if entry.kind in (journal.PREDICTION, journal.SHADOW):
                p = journal.prediction_of(entry.doc)
                if entry.kind == journal.PREDICTION:
                    await self._ensure_reference(p.model)
                effects.merge(self.core.on_prediction(p, shadow=entry.kind == journal.SHADOW))
            elif entry.kind == journal.OUTCOME:
                effects.merge(self.core.on_outcome(journal.outcome_of(entry.doc)))
            elif entry.kind == journal.ALIAS:
                effects.merge(self.core.on_alias(journal.alias_of(entry.doc)))
            self._applied[entry.event_id] = None
        while len(self._applied) > APPLIED_MEMORY:
            self._applied.popitem(last=False)
        self.journaled = len(entries)
        self._unsaved.merge(effects)
        if not await self._save():
            raise Unavailable("monitor store unavailable while resuming")
        # A checkpoint now: from here on the journal always starts after one (a database
        # from before the journal had its states only, taken in as the starting point).
        await self.checkpoint()
        if self.journaled:
            raise Unavailable("monitor store unavailable while resuming (checkpoint)")
        log.info(
            "monitor resumed: checkpoint %s, %d journal entries applied again",
            "loaded" if checkpoint is not None else "none",
            len(entries),
        )

    async def _ensure_reference(self, key: VersionKey) -> None:
        if key in self._resolved or self._retry_at.get(key, 0.0) > time.monotonic():
            return
        try:
            reference = await self._references.reference(key)
        except Unavailable as exc:
            backoff = self._reference_backoff.setdefault(
                key,
                RetryPolicy(attempts=None, initial_s=1.0, max_s=self._retry_s, jitter_s=1.0).backoff(
                    f"reading the reference of {key}"
                ),
            )
            pause = backoff.failed(exc)
            self._retry_at[key] = time.monotonic() + pause
            log.warning(
                "no reference for %s yet (%s); distribution checks wait, retry in %.1fs", key, exc, pause
            )
            return
        self._reference_backoff.pop(key, None)
        self._resolved.add(key)
        self.core.set_reference(key, reference)
        log.info("%s: %s", key, "reference loaded" if reference is not None else "no reference")
