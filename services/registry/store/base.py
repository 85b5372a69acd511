"""The store contract: what the registry core needs from a database.

A :class:`RegistryStore` hands out transactions (:class:`StoreTx`). A write
transaction is serialised with every other write (the audit chain needs a single
writer), commits when the ``with`` block ends without an exception and rolls back
otherwise. Every method takes and returns domain types (``services.registry.domain``)
and raises :mod:`libs.errors` only (a database that is down is ``Unavailable``).
High-volume appends that change no model state (per-epoch metrics, the prediction
index, outbox bookkeeping) have their own short transactions and do not take the
audit head.

The store is also the :class:`~libs.bus.outbox.OutboxSource` of the ``AliasChanged``
events its write transactions queue (:meth:`StoreTx.add_outbox`), keyed by row id.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from libs.bus import Outgoing
from services.registry.domain import (
    Actor,
    Alias,
    AliasChange,
    AuditDraft,
    AuditRecord,
    DatasetRef,
    Evaluation,
    FeatureRef,
    Metric,
    ModelKey,
    ModelVersion,
    NewRun,
    NewVersion,
    PredictionEntry,
    Run,
    RunStatus,
    UseCaseChange,
    UseCaseRecord,
    VersionKey,
    VersionStatus,
)


class StoreTx(ABC):
    """One transaction. Reads work in any; writes raise unless it is a write transaction."""

    # --- models and versions
    @abstractmethod
    def model_use_case(self, name: str) -> str | None:
        """The use case owning model ``name``, or None when no such model exists."""

    @abstractmethod
    def create_model(self, model: ModelKey, actor: Actor, now: datetime) -> None: ...

    @abstractmethod
    def get_version(self, key: VersionKey) -> ModelVersion | None: ...

    @abstractmethod
    def version_by_idempotency_key(self, model: ModelKey, key: str) -> ModelVersion | None: ...

    @abstractmethod
    def list_versions(
        self,
        use_case: str,
        name: str = "",
        status: VersionStatus | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[ModelVersion]:
        """Newest first."""

    @abstractmethod
    def add_version(self, new: NewVersion, actor: Actor, now: datetime) -> ModelVersion:
        """Next version number of the model (which must exist)."""

    @abstractmethod
    def set_status(self, key: VersionKey, status: VersionStatus) -> None: ...

    # --- aliases
    @abstractmethod
    def get_alias(self, model: ModelKey, alias: str) -> Alias | None: ...

    @abstractmethod
    def list_aliases(self, model: ModelKey) -> list[Alias]: ...

    @abstractmethod
    def put_alias(
        self, model: ModelKey, alias: str, version: int, actor: Actor, reason: str, now: datetime
    ) -> None: ...

    @abstractmethod
    def delete_alias(self, model: ModelKey, alias: str) -> None: ...

    # --- evaluations
    @abstractmethod
    def get_evaluation(self, report_id: str) -> Evaluation | None: ...

    @abstractmethod
    def evaluations_of(self, key: VersionKey) -> list[Evaluation]:
        """Oldest first."""

    @abstractmethod
    def add_evaluation(self, evaluation: Evaluation, now: datetime) -> None:
        """Stores the report and makes it the version's latest evaluation."""

    # --- runs
    @abstractmethod
    def get_run(self, run_id: str) -> Run | None: ...

    @abstractmethod
    def add_run(self, new: NewRun, run_id: str, actor: Actor, now: datetime) -> Run: ...

    @abstractmethod
    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        error: str,
        now: datetime,
        duration_s: float | None,
        datasets: Sequence[DatasetRef],
        features: Sequence[FeatureRef],
    ) -> None:
        """Ends a run; ``datasets``/``features`` are added to the ones it was created with."""

    # --- audit, outbox, idempotency
    @abstractmethod
    def append_audit(self, draft: AuditDraft, time_us: int) -> AuditRecord:
        """Appends one entry to the hash chain (write transactions only)."""

    @abstractmethod
    def audit_of(self, key: VersionKey) -> list[AuditRecord]:
        """Entries about one version, its aliases included, oldest first."""

    @abstractmethod
    def list_audit(
        self,
        use_case: str = "",
        model: ModelKey | None = None,
        version: int = 0,
        after_sequence: int = 0,
        limit: int = 100,
    ) -> list[AuditRecord]: ...

    @abstractmethod
    def add_outbox(self, change: AliasChange, now: datetime) -> None: ...

    @abstractmethod
    def is_processed(self, event_id: str) -> bool: ...

    @abstractmethod
    def mark_processed(self, event_id: str, source: str, now: datetime) -> None: ...

    # --- prediction index
    @abstractmethod
    def get_prediction(self, prediction_id: str) -> PredictionEntry | None:
        """The served (non-shadow) entry when there is one, else the shadow one."""

    # --- use-case catalogue
    @abstractmethod
    def get_usecase(self, name: str, version: int = 0) -> UseCaseRecord | None:
        """The current entry of ``name`` (version 0), or one of its applied versions."""

    @abstractmethod
    def list_usecases(self, include_retired: bool = False) -> list[UseCaseRecord]:
        """Current entries, by name."""

    @abstractmethod
    def put_usecase(
        self, record: UseCaseRecord, changes: Sequence[str], reason: str, audit_event_id: str
    ) -> None:
        """Makes ``record`` the use case's current entry: a new version is stored with its
        spec; the current version with another state is a retirement (or a return)."""

    @abstractmethod
    def add_usecase_outbox(self, change: UseCaseChange, now: datetime) -> None:
        """Queues the ``UseCaseChanged`` event of a catalogue change in this transaction."""


class RegistryStore(ABC):
    @abstractmethod
    def read(self) -> AbstractContextManager[StoreTx]: ...

    @abstractmethod
    def write(self) -> AbstractContextManager[StoreTx]:
        """A serialised write transaction (commit on success, rollback on error)."""

    @abstractmethod
    def log_metrics(self, run_id: str, metrics: Sequence[Metric], now: datetime) -> int:
        """Upserts per-step metrics of a running run; returns how many were written."""

    @abstractmethod
    def index_predictions(self, entries: Sequence[PredictionEntry]) -> int:
        """Inserts entries, skipping ids already indexed; returns how many were new."""

    @abstractmethod
    def pending(self, limit: int = 100) -> list[tuple[int, Outgoing]]:
        """Unpublished ``AliasChanged`` and ``UseCaseChanged`` events, oldest first, with
        their row ids."""

    @abstractmethod
    def mark_sent(self, keys: Sequence[int]) -> None:
        """The rows ``keys`` were published."""

    @abstractmethod
    def audit_chain(self, batch: int = 1000) -> Iterator[AuditRecord]:
        """Every audit entry in sequence order (streamed in batches)."""

    @abstractmethod
    def audit_head(self) -> tuple[int, str] | None:
        """The stored (last sequence, last hash); None when the log is empty."""

    @abstractmethod
    def close(self) -> None: ...
