"""The use-case catalogue the registry owns: apply, list, show, retire.

Each change runs in one store transaction with its audit entry (``usecase.created``,
``usecase.updated``, ``usecase.reactivated``, ``usecase.retired``) and the outbox row of
its ``UseCaseChanged`` event, which the relay publishes on the compacted use-case topic
every service follows (:mod:`libs.usecase.follower`). What may change in an onboarded use
case, and what is refused because it needs a new model, is :mod:`libs.usecase.compat`.

The registry's own set of use cases (``Registry.usecases``, what versions, policies and
signatures are checked against) is the same :class:`~libs.usecase.catalogue.Catalogue`
the catalogue updates right after each commit, so a use case is usable here as soon as
``ApplyUseCase`` answers. Methods block (SQLAlchemy): the servicer runs them in threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from libs.errors import FailedPrecondition, InvalidArgument, NotFound
from libs.rpc.auth import Principal
from libs.usecase import UseCase, UseCaseError, parse_usecase
from libs.usecase.catalogue import Catalogue, Change, Entry
from libs.usecase.compat import FieldChange, Outcome, plan
from services.registry import validate
from services.registry.domain import (
    SYSTEM,
    Actor,
    AuditDraft,
    UseCaseChange,
    UseCaseRecord,
    UseCaseState,
)
from services.registry.store import RegistryStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    record: UseCaseRecord
    outcome: Outcome
    changes: tuple[FieldChange, ...] = ()
    audit_event_id: str = ""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _spec_of(record: UseCaseRecord) -> UseCase:
    # Validated when it was applied; a newer libs.usecase that refuses an old spec is a
    # bug of that change, reported as such.
    try:
        return parse_usecase(record.spec_yaml, f"{record.name} v{record.version} (catalogue)")
    except UseCaseError as exc:
        raise FailedPrecondition(
            f"the applied spec of {record.name!r} v{record.version} no longer validates: {exc.message}"
        ) from None


def entry_of(record: UseCaseRecord) -> Entry:
    return Entry(
        record.name, record.version, record.state is UseCaseState.ACTIVE, _spec_of(record), record.spec_sha256
    )


class UseCaseCatalogue:
    """The catalogue's rules over the store; ``usecases`` is the registry's live set."""

    def __init__(
        self,
        store: RegistryStore,
        usecases: Catalogue,
        *,
        clock: Callable[[], datetime],
        on_change: Callable[[], None] = lambda: None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.store = store
        self.usecases = usecases
        self._clock = clock
        # Called (from any thread) after a commit that queued a UseCaseChanged event.
        self._on_change = on_change
        self._loop = loop
        self._reports: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------ start
    def load(self) -> int:
        """The active use cases of the store into the live set (at start); returns how many."""
        with self.store.read() as tx:
            records = tx.list_usecases(include_retired=True)
        for record in records:
            try:
                self.usecases.record(entry_of(record))
            except FailedPrecondition as exc:
                log.error("%s; it is left out", exc.message)
        return len(self.usecases.usecases)

    def records(self) -> list[UseCaseRecord]:
        """Every entry, retired ones included (republished when the topic was lost)."""
        with self.store.read() as tx:
            return tx.list_usecases(include_retired=True)

    # ------------------------------------------------------------ reads
    def list(self, include_retired: bool = False) -> list[UseCaseRecord]:
        with self.store.read() as tx:
            return tx.list_usecases(include_retired)

    def get(self, name: str, version: int = 0) -> UseCaseRecord:
        validate.use_case(name)
        if version < 0:
            raise InvalidArgument("version", "must not be negative")
        with self.store.read() as tx:
            record = tx.get_usecase(name, version)
        if record is None:
            what = f"version {version} of use case {name!r}" if version else f"use case {name!r}"
            raise NotFound(f"{what} is not in the catalogue")
        return record

    # ------------------------------------------------------------ changes
    def apply(
        self,
        use_case: str,
        spec_yaml: str,
        principal: Principal | None,
        *,
        reason: str = "",
        dry_run: bool = False,
    ) -> ApplyResult:
        """Create ``use_case`` from ``spec_yaml``, or apply it as its next version."""
        validate.use_case(use_case)
        spec = parse_usecase(spec_yaml, "spec_yaml")
        if spec.name != use_case:
            raise InvalidArgument("use_case", f"{use_case!r} is not the spec's name {spec.name!r}")
        actor = self._actor(principal, use_case)
        now = self._clock()
        with self.store.write() as tx:
            current = tx.get_usecase(use_case)
            steps = plan(_spec_of(current) if current is not None else None, spec)
            retired = current is not None and current.state is UseCaseState.RETIRED
            if steps.outcome is Outcome.UNCHANGED and not retired:
                assert current is not None
                return ApplyResult(current, Outcome.UNCHANGED)
            outcome = Outcome.UPDATED if current is not None else Outcome.CREATED
            record = UseCaseRecord(
                name=use_case,
                version=spec.version,
                state=UseCaseState.ACTIVE,
                spec_yaml=current.spec_yaml if steps.outcome is Outcome.UNCHANGED and current else spec_yaml,
                spec_sha256=(
                    current.spec_sha256
                    if steps.outcome is Outcome.UNCHANGED and current
                    else _sha256(spec_yaml)
                ),
                created_at=current.created_at if current else now,
                created_by=current.created_by if current else actor,
                updated_at=now,
                updated_by=actor,
            )
            if dry_run:
                return ApplyResult(record, outcome, steps.changes)
            action = (
                "usecase.created"
                if current is None
                else "usecase.reactivated"
                if retired
                else "usecase.updated"
            )
            changed = [c.field for c in steps.changes]
            audit = tx.append_audit(
                AuditDraft(
                    action=action,
                    actor=actor,
                    use_case=use_case,
                    model_name="",
                    version=0,
                    alias="",
                    reason=reason,
                    evidence_ids=(),
                    details={
                        "spec_version": record.version,
                        "previous_version": current.version if current else 0,
                        "spec_sha256": record.spec_sha256,
                        "changes": changed,
                    },
                ),
                int(now.timestamp() * 1_000_000),
            )
            tx.put_usecase(record, changed, reason, audit.event_id)
            tx.add_usecase_outbox(UseCaseChange(record, reason, audit.event_id), now)
        self._committed(record, spec)
        log.info("use case %s: %s v%d by %s", use_case, action.split(".")[1], record.version, actor.subject)
        return ApplyResult(record, outcome, steps.changes, audit.event_id)

    def retire(
        self, use_case: str, principal: Principal | None, *, reason: str = ""
    ) -> tuple[UseCaseRecord, str]:
        """Retire ``use_case``; retiring a retired one changes nothing (empty audit id)."""
        validate.use_case(use_case)
        actor = self._actor(principal, use_case)
        now = self._clock()
        with self.store.write() as tx:
            current = tx.get_usecase(use_case)
            if current is None:
                raise NotFound(f"use case {use_case!r} is not in the catalogue")
            if current.state is UseCaseState.RETIRED:
                return current, ""
            record = replace(current, state=UseCaseState.RETIRED, updated_at=now, updated_by=actor)
            audit = tx.append_audit(
                AuditDraft(
                    action="usecase.retired",
                    actor=actor,
                    use_case=use_case,
                    model_name="",
                    version=0,
                    alias="",
                    reason=reason,
                    evidence_ids=(),
                    details={"spec_version": record.version, "spec_sha256": record.spec_sha256},
                ),
                int(now.timestamp() * 1_000_000),
            )
            tx.put_usecase(record, [], reason, audit.event_id)
            tx.add_usecase_outbox(UseCaseChange(record, reason, audit.event_id), now)
        self._committed(record, _spec_of(record))
        log.info("use case %s: retired by %s", use_case, actor.subject)
        return record, audit.event_id

    # ------------------------------------------------------------ helpers
    def _committed(self, record: UseCaseRecord, spec: UseCase) -> None:
        self._on_change()
        change = self.usecases.record(
            Entry(record.name, record.version, record.state is UseCaseState.ACTIVE, spec, record.spec_sha256)
        )
        if change is not None and self._loop is not None:
            # Health and logs, on the service's loop (this runs in a worker thread).
            self._loop.call_soon_threadsafe(self._notify, change)

    def _notify(self, change: Change) -> None:
        task = asyncio.ensure_future(self.usecases.notify(change))
        # Held until done: the loop keeps only a weak reference to a task.
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)
        task.add_done_callback(_log_failure)

    @staticmethod
    def _actor(principal: Principal | None, use_case: str) -> Actor:
        if principal is None:
            return SYSTEM
        return Actor(principal.subject, tuple(sorted(principal.roles_in(use_case))))


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("reporting a catalogue change failed", exc_info=task.exception())


__all__ = ["ApplyResult", "UseCaseCatalogue", "entry_of"]
