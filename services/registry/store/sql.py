"""The SQLAlchemy implementation of the store: SQLite by default, PostgreSQL in production.

The database is a :class:`libs.sql.Database` (engine, SQLite pragmas and write lock,
Alembic migrations). Writers are serialised by locking the audit head row
(``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite, where FOR UPDATE does not exist,
the write lock that ``Database.write`` takes at BEGIN), so version numbers, alias
compare-and-set and the audit chain never race. Database errors leave the store as
:mod:`libs.errors` (:func:`_database`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, SQLAlchemyError
from sqlalchemy.orm import Session

from libs.bus import Outgoing, topics
from libs.errors import AifError, FailedPrecondition, NotFound, Unavailable
from libs.sql import Database, translate
from services.registry import audit
from services.registry.convert import alias_changed_event, usecase_changed_event
from services.registry.domain import (
    Actor,
    Alias,
    AliasChange,
    AliasChangeKind,
    AuditDraft,
    AuditRecord,
    DatasetRef,
    Evaluation,
    FeatureRef,
    GateResult,
    Metric,
    ModelKey,
    ModelVersion,
    NewRun,
    NewVersion,
    PredictionEntry,
    Run,
    RunStatus,
    Signature,
    UseCaseChange,
    UseCaseRecord,
    UseCaseState,
    VersionKey,
    VersionStatus,
)
from services.registry.store.base import RegistryStore, StoreTx
from services.registry.store.tables import (
    METADATA,
    AliasRow,
    AuditHeadRow,
    AuditRow,
    EvaluationRow,
    ModelRow,
    OutboxRow,
    PredictionRow,
    ProcessedEventRow,
    RunMetricRow,
    RunRow,
    UseCaseRow,
    UseCaseVersionRow,
    VersionRow,
)

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
_INSERT_CHUNK = 1000


def _utcnow() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _database(what: str) -> Iterator[None]:
    """:func:`libs.sql.translate`, and no other SQLAlchemy error past it either: a lost
    psycopg connection (``InterfaceError``) is ``Unavailable`` too, anything else an
    internal error that names the driver's complaint, not the statement."""
    try:
        with translate(what):
            yield
    except InterfaceError as exc:
        raise Unavailable(f"registry database unavailable: {_first_line(exc)}") from exc
    except SQLAlchemyError as exc:
        raise AifError(
            f"registry database error on {what}: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc


def _first_line(exc: SQLAlchemyError) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    lines = str(cause).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


# ---------------------------------------------------------------- row <-> domain


def _actor_json(actor: Actor) -> dict[str, Any]:
    return {"subject": actor.subject, "roles": list(actor.roles)}


def _actor(data: dict[str, Any]) -> Actor:
    return Actor(data.get("subject", ""), tuple(data.get("roles", ())))


def _datasets_json(items: Sequence[DatasetRef]) -> list[dict[str, str]]:
    return [{"use_case": d.use_case, "version": d.version, "uri": d.uri} for d in items]


def _datasets(data: list[dict[str, str]]) -> tuple[DatasetRef, ...]:
    return tuple(DatasetRef(d["use_case"], d["version"], d.get("uri", "")) for d in data)


def _features_json(items: Sequence[FeatureRef]) -> list[dict[str, str]]:
    return [
        {"use_case": f.use_case, "feature_view": f.feature_view, "name": f.name, "version": f.version}
        for f in items
    ]


def _features(data: list[dict[str, str]]) -> tuple[FeatureRef, ...]:
    return tuple(FeatureRef(f["use_case"], f["feature_view"], f["name"], f.get("version", "")) for f in data)


def _metrics_json(items: Sequence[Metric]) -> list[dict[str, Any]]:
    return [{"name": m.name, "value": m.value, "split": m.split, "step": m.step} for m in items]


def _metrics(data: list[dict[str, Any]]) -> tuple[Metric, ...]:
    return tuple(
        Metric(m["name"], float(m["value"]), m.get("split", ""), int(m.get("step", 0))) for m in data
    )


def _merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return old + [item for item in new if item not in old]


def _required(signature: Signature | None) -> Signature:
    if signature is None:
        raise ValueError("a version is stored with its signature")
    return signature


def _version(row: VersionRow, model: ModelRow, aliases: Sequence[str] = ()) -> ModelVersion:
    return ModelVersion(
        use_case=model.use_case,
        name=model.name,
        version=row.version,
        status=VersionStatus(row.status),
        artifact_sha256=row.artifact_sha256,
        signature=Signature.from_json(row.signature),
        created_at=row.created_at,
        created_by=_actor(row.created_by),
        run_id=row.run_id,
        training_request_id=row.training_request_id,
        drift_report_id=row.drift_report_id,
        reference_sha256=row.reference_sha256,
        datasets=_datasets(row.datasets),
        features=_features(row.features),
        metrics=_metrics(row.metrics),
        code_version=row.code_version,
        params=dict(row.params),
        labels=dict(row.labels),
        evaluation_report_id=row.evaluation_report_id,
        idempotency_key=row.idempotency_key or "",
        aliases=tuple(sorted(aliases)),
    )


def _alias(row: AliasRow, model: ModelRow) -> Alias:
    return Alias(
        model.use_case, model.name, row.alias, row.version, row.updated_at, _actor(row.updated_by), row.reason
    )


def _run(row: RunRow, metrics: Sequence[RunMetricRow] = ()) -> Run:
    return Run(
        run_id=row.run_id,
        use_case=row.use_case,
        model_name=row.model_name,
        status=RunStatus(row.status),
        started_at=row.started_at,
        created_by=_actor(row.created_by),
        training_request_id=row.training_request_id,
        drift_report_id=row.drift_report_id,
        params=dict(row.params),
        environment=dict(row.environment),
        code_version=row.code_version,
        datasets=_datasets(row.datasets),
        features=_features(row.features),
        seed=row.seed,
        finished_at=row.finished_at,
        duration_s=row.duration_s,
        error=row.error,
        metrics=tuple(Metric(m.name, m.value, m.split, m.step) for m in metrics),
    )


def _evaluation(row: EvaluationRow, key: VersionKey) -> Evaluation:
    return Evaluation(
        report_id=row.report_id,
        model=key,
        passed=row.passed,
        champion_version=row.champion_version,
        gates=tuple(GateResult(**g) for g in row.gates),
        metrics=_metrics(row.metrics),
        dataset=DatasetRef(**row.dataset) if row.dataset else None,
        evaluated_at=row.evaluated_at,
    )


def _audit(row: AuditRow) -> AuditRecord:
    return AuditRecord(
        event_id=row.event_id,
        sequence=row.sequence,
        time_us=row.time_us,
        action=row.action,
        actor=Actor(row.actor_subject, tuple(row.actor_roles)),
        use_case=row.use_case,
        model_name=row.model_name,
        version=row.version,
        alias=row.alias,
        reason=row.reason,
        evidence_ids=tuple(row.evidence_ids),
        details=dict(row.details),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _change_json(change: AliasChange) -> dict[str, Any]:
    return {
        "use_case": change.use_case,
        "name": change.name,
        "alias": change.alias,
        "new_version": change.new_version,
        "old_version": change.old_version,
        "kind": change.kind.value,
        "reason": change.reason,
        "actor": _actor_json(change.actor),
        "evidence_ids": list(change.evidence_ids),
        "changed_at": change.changed_at.isoformat(),
        "audit_event_id": change.audit_event_id,
    }


def _change(data: dict[str, Any]) -> AliasChange:
    return AliasChange(
        use_case=data["use_case"],
        name=data["name"],
        alias=data["alias"],
        new_version=data["new_version"],
        old_version=data["old_version"],
        kind=AliasChangeKind(data["kind"]),
        reason=data["reason"],
        actor=_actor(data["actor"]),
        evidence_ids=tuple(data["evidence_ids"]),
        changed_at=datetime.fromisoformat(data["changed_at"]),
        audit_event_id=data["audit_event_id"],
    )


def _usecase(row: UseCaseRow, spec: UseCaseVersionRow) -> UseCaseRecord:
    return UseCaseRecord(
        name=row.name,
        version=spec.version,
        state=UseCaseState(row.state),
        spec_yaml=spec.spec_yaml,
        spec_sha256=spec.spec_sha256,
        created_at=row.created_at,
        created_by=_actor(row.created_by),
        updated_at=row.updated_at if spec.version == row.version else spec.applied_at,
        updated_by=_actor(row.updated_by) if spec.version == row.version else _actor(spec.applied_by),
    )


def _usecase_change_json(change: UseCaseChange) -> dict[str, Any]:
    r = change.record
    return {
        "name": r.name,
        "version": r.version,
        "state": r.state.value,
        "spec_yaml": r.spec_yaml,
        "spec_sha256": r.spec_sha256,
        "created_at": r.created_at.isoformat(),
        "created_by": _actor_json(r.created_by),
        "updated_at": r.updated_at.isoformat(),
        "updated_by": _actor_json(r.updated_by),
        "reason": change.reason,
        "audit_event_id": change.audit_event_id,
    }


def _usecase_change(data: dict[str, Any]) -> UseCaseChange:
    record = UseCaseRecord(
        name=data["name"],
        version=int(data["version"]),
        state=UseCaseState(data["state"]),
        spec_yaml=data["spec_yaml"],
        spec_sha256=data["spec_sha256"],
        created_at=datetime.fromisoformat(data["created_at"]),
        created_by=_actor(data["created_by"]),
        updated_at=datetime.fromisoformat(data["updated_at"]),
        updated_by=_actor(data["updated_by"]),
    )
    return UseCaseChange(record, data["reason"], data["audit_event_id"])


# Outbox row kinds: what each row becomes when published.
ALIAS_CHANGED, USECASE_CHANGED = "alias_changed", "usecase_changed"


# ---------------------------------------------------------------- transaction


class SqlTx(StoreTx):
    def __init__(self, session: Session, head: AuditHeadRow | None) -> None:
        self._s = session
        self._head = head  # locked head row; None in read transactions

    def _writable(self) -> None:
        if self._head is None:
            raise RuntimeError("write attempted in a read transaction")

    def _model(self, model: ModelKey) -> ModelRow:
        row = self._s.scalar(
            select(ModelRow).where(ModelRow.name == model.name, ModelRow.use_case == model.use_case)
        )
        if row is None:
            raise NotFound(f"model {model.use_case}/{model.name} not found")
        return row

    def _version_row(self, key: VersionKey) -> tuple[VersionRow, ModelRow]:
        found = self._s.execute(
            select(VersionRow, ModelRow)
            .join(ModelRow, VersionRow.model_id == ModelRow.id)
            .where(
                ModelRow.name == key.name,
                ModelRow.use_case == key.use_case,
                VersionRow.version == key.version,
            )
        ).first()
        if found is None:
            raise NotFound(f"model version {key} not found")
        return found[0], found[1]

    def _aliases_of(self, model_id: int, version: int) -> list[str]:
        return list(
            self._s.scalars(
                select(AliasRow.alias).where(AliasRow.model_id == model_id, AliasRow.version == version)
            )
        )

    # --- models and versions
    def model_use_case(self, name: str) -> str | None:
        return self._s.scalar(select(ModelRow.use_case).where(ModelRow.name == name))

    def create_model(self, model: ModelKey, actor: Actor, now: datetime) -> None:
        self._writable()
        # A savepoint: the name taken (AlreadyExists) leaves the transaction usable.
        with translate(f"model {model.name}"), self._s.begin_nested():
            self._s.add(
                ModelRow(
                    use_case=model.use_case, name=model.name, created_at=now, created_by=_actor_json(actor)
                )
            )

    def get_version(self, key: VersionKey) -> ModelVersion | None:
        try:
            row, model = self._version_row(key)
        except NotFound:
            return None
        return _version(row, model, self._aliases_of(model.id, row.version))

    def version_by_idempotency_key(self, model: ModelKey, key: str) -> ModelVersion | None:
        found = self._s.execute(
            select(VersionRow, ModelRow)
            .join(ModelRow, VersionRow.model_id == ModelRow.id)
            .where(
                ModelRow.name == model.name,
                ModelRow.use_case == model.use_case,
                VersionRow.idempotency_key == key,
            )
        ).first()
        if found is None:
            return None
        return _version(found[0], found[1], self._aliases_of(found[1].id, found[0].version))

    def list_versions(
        self,
        use_case: str,
        name: str = "",
        status: VersionStatus | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[ModelVersion]:
        query = (
            select(VersionRow, ModelRow)
            .join(ModelRow, VersionRow.model_id == ModelRow.id)
            .where(ModelRow.use_case == use_case)
        )
        if name:
            query = query.where(ModelRow.name == name)
        if status is not None:
            query = query.where(VersionRow.status == status.value)
        rows = self._s.execute(
            query.order_by(ModelRow.name, VersionRow.version.desc()).offset(offset).limit(limit)
        ).all()
        model_ids = {m.id for _, m in rows}
        aliases: dict[tuple[int, int], list[str]] = {}
        if model_ids:
            for a in self._s.scalars(select(AliasRow).where(AliasRow.model_id.in_(model_ids))):
                aliases.setdefault((a.model_id, a.version), []).append(a.alias)
        return [_version(v, m, aliases.get((m.id, v.version), ())) for v, m in rows]

    def add_version(self, new: NewVersion, actor: Actor, now: datetime) -> ModelVersion:
        self._writable()
        model = self._model(ModelKey(new.use_case, new.name))
        last = self._s.scalar(select(func.max(VersionRow.version)).where(VersionRow.model_id == model.id))
        row = VersionRow(
            model_id=model.id,
            version=(last or 0) + 1,
            status=VersionStatus.CANDIDATE.value,
            artifact_sha256=new.artifact_sha256,
            signature=_required(new.signature).to_json(),
            run_id=new.run_id,
            training_request_id=new.training_request_id,
            drift_report_id=new.drift_report_id,
            reference_sha256=new.reference_sha256,
            datasets=_datasets_json(new.datasets),
            features=_features_json(new.features),
            metrics=_metrics_json(new.metrics),
            code_version=new.code_version,
            params=dict(new.params),
            labels=dict(new.labels),
            evaluation_report_id="",
            idempotency_key=new.idempotency_key or None,
            created_at=now,
            created_by=_actor_json(actor),
        )
        self._s.add(row)
        self._s.flush()
        return _version(row, model)

    def set_status(self, key: VersionKey, status: VersionStatus) -> None:
        self._writable()
        row, _ = self._version_row(key)
        row.status = status.value
        self._s.flush()

    # --- aliases
    def get_alias(self, model: ModelKey, alias: str) -> Alias | None:
        found = self._s.execute(
            select(AliasRow, ModelRow)
            .join(ModelRow, AliasRow.model_id == ModelRow.id)
            .where(ModelRow.name == model.name, ModelRow.use_case == model.use_case, AliasRow.alias == alias)
        ).first()
        return None if found is None else _alias(found[0], found[1])

    def list_aliases(self, model: ModelKey) -> list[Alias]:
        rows = self._s.execute(
            select(AliasRow, ModelRow)
            .join(ModelRow, AliasRow.model_id == ModelRow.id)
            .where(ModelRow.name == model.name, ModelRow.use_case == model.use_case)
            .order_by(AliasRow.alias)
        ).all()
        return [_alias(a, m) for a, m in rows]

    def put_alias(
        self, model: ModelKey, alias: str, version: int, actor: Actor, reason: str, now: datetime
    ) -> None:
        self._writable()
        m = self._model(model)
        row = self._s.get(AliasRow, (m.id, alias))
        if row is None:
            self._s.add(
                AliasRow(
                    model_id=m.id,
                    alias=alias,
                    version=version,
                    updated_at=now,
                    updated_by=_actor_json(actor),
                    reason=reason,
                )
            )
        else:
            row.version, row.updated_at, row.updated_by, row.reason = version, now, _actor_json(actor), reason
        self._s.flush()

    def delete_alias(self, model: ModelKey, alias: str) -> None:
        self._writable()
        m = self._model(model)
        self._s.execute(delete(AliasRow).where(AliasRow.model_id == m.id, AliasRow.alias == alias))

    # --- evaluations
    def get_evaluation(self, report_id: str) -> Evaluation | None:
        found = self._s.execute(
            select(EvaluationRow, VersionRow, ModelRow)
            .join(VersionRow, EvaluationRow.version_id == VersionRow.id)
            .join(ModelRow, VersionRow.model_id == ModelRow.id)
            .where(EvaluationRow.report_id == report_id)
        ).first()
        if found is None:
            return None
        ev, v, m = found
        return _evaluation(ev, VersionKey(m.use_case, m.name, v.version))

    def evaluations_of(self, key: VersionKey) -> list[Evaluation]:
        row, _ = self._version_row(key)
        rows = self._s.scalars(
            select(EvaluationRow)
            .where(EvaluationRow.version_id == row.id)
            .order_by(EvaluationRow.recorded_at, EvaluationRow.report_id)
        )
        return [_evaluation(r, key) for r in rows]

    def add_evaluation(self, evaluation: Evaluation, now: datetime) -> None:
        self._writable()
        row, _ = self._version_row(evaluation.model)
        self._s.add(
            EvaluationRow(
                report_id=evaluation.report_id,
                version_id=row.id,
                passed=evaluation.passed,
                champion_version=evaluation.champion_version,
                gates=[g.__dict__.copy() for g in evaluation.gates],
                metrics=_metrics_json(evaluation.metrics),
                dataset=evaluation.dataset.__dict__.copy() if evaluation.dataset else None,
                evaluated_at=evaluation.evaluated_at,
                recorded_at=now,
            )
        )
        row.evaluation_report_id = evaluation.report_id
        self._s.flush()

    # --- runs
    def get_run(self, run_id: str) -> Run | None:
        row = self._s.get(RunRow, run_id)
        if row is None:
            return None
        metrics = self._s.scalars(
            select(RunMetricRow)
            .where(RunMetricRow.run_id == run_id)
            .order_by(RunMetricRow.step, RunMetricRow.split, RunMetricRow.name)
        )
        return _run(row, list(metrics))

    def add_run(self, new: NewRun, run_id: str, actor: Actor, now: datetime) -> Run:
        self._writable()
        row = RunRow(
            run_id=run_id,
            use_case=new.use_case,
            model_name=new.model_name,
            status=RunStatus.RUNNING.value,
            training_request_id=new.training_request_id,
            drift_report_id=new.drift_report_id,
            params=dict(new.params),
            environment=dict(new.environment),
            code_version=new.code_version,
            datasets=_datasets_json(new.datasets),
            features=_features_json(new.features),
            seed=new.seed,
            started_at=now,
            finished_at=None,
            duration_s=None,
            error="",
            created_by=_actor_json(actor),
        )
        self._s.add(row)
        self._s.flush()
        return _run(row)

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
        self._writable()
        row = self._s.get(RunRow, run_id)
        if row is None:
            raise NotFound(f"run {run_id} not found")
        row.status, row.error, row.finished_at = status.value, error, now
        row.duration_s = duration_s if duration_s is not None else (now - row.started_at).total_seconds()
        row.datasets = _merge(row.datasets, _datasets_json(datasets))
        row.features = _merge(row.features, _features_json(features))
        self._s.flush()

    # --- audit, outbox, idempotency
    def append_audit(self, draft: AuditDraft, time_us: int) -> AuditRecord:
        self._writable()
        head = self._head
        assert head is not None
        record = AuditRecord(
            event_id=uuid.uuid4().hex,
            sequence=head.sequence + 1,
            time_us=time_us,
            action=draft.action,
            actor=draft.actor,
            use_case=draft.use_case,
            model_name=draft.model_name,
            version=draft.version,
            alias=draft.alias,
            reason=draft.reason,
            evidence_ids=tuple(e for e in draft.evidence_ids if e),
            # Normalised through JSON so what is hashed is exactly what is stored.
            details=json.loads(audit.canonical_json(draft.details)),
            prev_hash=head.hash,
            hash="",
        )
        record = replace(record, hash=audit.entry_hash(head.hash, record))
        self._s.add(
            AuditRow(
                sequence=record.sequence,
                event_id=record.event_id,
                time_us=record.time_us,
                action=record.action,
                actor_subject=record.actor.subject,
                actor_roles=list(record.actor.roles),
                use_case=record.use_case,
                model_name=record.model_name,
                version=record.version,
                alias=record.alias,
                reason=record.reason,
                evidence_ids=list(record.evidence_ids),
                details=record.details,
                prev_hash=record.prev_hash,
                hash=record.hash,
            )
        )
        head.sequence, head.hash = record.sequence, record.hash
        self._s.flush()
        return record

    def audit_of(self, key: VersionKey) -> list[AuditRecord]:
        rows = self._s.scalars(
            select(AuditRow)
            .where(
                AuditRow.use_case == key.use_case,
                AuditRow.model_name == key.name,
                AuditRow.version == key.version,
            )
            .order_by(AuditRow.sequence)
        )
        return [_audit(r) for r in rows]

    def list_audit(
        self,
        use_case: str = "",
        model: ModelKey | None = None,
        version: int = 0,
        after_sequence: int = 0,
        limit: int = 100,
    ) -> list[AuditRecord]:
        query = select(AuditRow).where(AuditRow.sequence > after_sequence)
        if use_case:
            query = query.where(AuditRow.use_case == use_case)
        if model is not None:
            query = query.where(AuditRow.use_case == model.use_case, AuditRow.model_name == model.name)
        if version:
            query = query.where(AuditRow.version == version)
        return [_audit(r) for r in self._s.scalars(query.order_by(AuditRow.sequence).limit(limit))]

    def add_outbox(self, change: AliasChange, now: datetime) -> None:
        self._writable()
        self._s.add(
            OutboxRow(
                event_id=change.audit_event_id,
                kind=ALIAS_CHANGED,
                use_case=change.use_case,
                payload=_change_json(change),
                created_at=now,
            )
        )
        self._s.flush()

    def is_processed(self, event_id: str) -> bool:
        return self._s.get(ProcessedEventRow, event_id) is not None

    def mark_processed(self, event_id: str, source: str, now: datetime) -> None:
        self._writable()
        self._s.add(ProcessedEventRow(event_id=event_id, source=source, processed_at=now))
        self._s.flush()

    def get_prediction(self, prediction_id: str) -> PredictionEntry | None:
        row = self._s.scalar(
            select(PredictionRow)
            .where(PredictionRow.prediction_id == prediction_id)
            .order_by(PredictionRow.shadow)
            .limit(1)
        )
        if row is None:
            return None
        return PredictionEntry(
            row.prediction_id,
            row.use_case,
            row.model_name,
            row.version,
            row.predicted_at,
            row.alias,
            row.shadow,
            row.trace_id,
            row.entity_id,
        )

    # --- use-case catalogue
    def get_usecase(self, name: str, version: int = 0) -> UseCaseRecord | None:
        row = self._s.get(UseCaseRow, name)
        if row is None:
            return None
        spec = self._s.get(UseCaseVersionRow, (name, version or row.version))
        return None if spec is None else _usecase(row, spec)

    def list_usecases(self, include_retired: bool = False) -> list[UseCaseRecord]:
        query = (
            select(UseCaseRow, UseCaseVersionRow)
            .join(
                UseCaseVersionRow,
                (UseCaseVersionRow.name == UseCaseRow.name)
                & (UseCaseVersionRow.version == UseCaseRow.version),
            )
            .order_by(UseCaseRow.name)
        )
        if not include_retired:
            query = query.where(UseCaseRow.state == UseCaseState.ACTIVE.value)
        return [_usecase(row, spec) for row, spec in self._s.execute(query).all()]

    def put_usecase(
        self, record: UseCaseRecord, changes: Sequence[str], reason: str, audit_event_id: str
    ) -> None:
        self._writable()
        row = self._s.get(UseCaseRow, record.name)
        if row is None:
            row = UseCaseRow(
                name=record.name,
                version=record.version,
                state=record.state.value,
                created_at=record.created_at,
                created_by=_actor_json(record.created_by),
                updated_at=record.updated_at,
                updated_by=_actor_json(record.updated_by),
            )
            self._s.add(row)
            self._s.flush()
        if self._s.get(UseCaseVersionRow, (record.name, record.version)) is None:
            self._s.add(
                UseCaseVersionRow(
                    name=record.name,
                    version=record.version,
                    spec_yaml=record.spec_yaml,
                    spec_sha256=record.spec_sha256,
                    changes=list(changes),
                    reason=reason,
                    applied_at=record.updated_at,
                    applied_by=_actor_json(record.updated_by),
                    audit_event_id=audit_event_id,
                )
            )
        row.version, row.state = record.version, record.state.value
        row.updated_at, row.updated_by = record.updated_at, _actor_json(record.updated_by)
        self._s.flush()

    def add_usecase_outbox(self, change: UseCaseChange, now: datetime) -> None:
        self._writable()
        self._s.add(
            OutboxRow(
                event_id=change.audit_event_id,
                kind=USECASE_CHANGED,
                use_case=change.record.name,
                payload=_usecase_change_json(change),
                created_at=now,
            )
        )
        self._s.flush()


# ---------------------------------------------------------------- store


class SqlStore(RegistryStore):
    """The registry's tables in ``db``, migrated (see :func:`open_store`). Its outbox rows
    leave as ``AliasChanged`` events on ``promoted_topic`` and ``UseCaseChanged`` events
    on ``usecases_topic``."""

    def __init__(
        self,
        db: Database,
        *,
        promoted_topic: str = topics.MODEL_PROMOTED,
        usecases_topic: str = topics.USECASES,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.db = db
        self._topic = promoted_topic
        self._usecases_topic = usecases_topic
        self._clock = clock

    def migrate(self) -> None:
        """``alembic upgrade head`` on this database."""
        with _database("the registry schema"):
            self.db.migrate(MIGRATIONS, metadata=METADATA)

    @contextmanager
    def read(self) -> Iterator[StoreTx]:
        with _database("registry state"), self.db.read() as session:
            yield SqlTx(session, None)

    @contextmanager
    def write(self) -> Iterator[StoreTx]:
        with _database("registry state"), self.db.write() as session:
            head = session.scalar(select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update())
            if head is None:
                raise FailedPrecondition("registry database has no audit head: run the migrations")
            yield SqlTx(session, head)

    def log_metrics(self, run_id: str, metrics: Sequence[Metric], now: datetime) -> int:
        if not metrics:
            return 0
        rows = {
            (m.name, m.split, m.step): {
                "run_id": run_id,
                "name": m.name,
                "split": m.split,
                "step": m.step,
                "value": m.value,
                "logged_at": now,
            }
            for m in metrics
        }
        with _database(f"metrics of run {run_id}"), self.db.write() as session:
            status = session.scalar(select(RunRow.status).where(RunRow.run_id == run_id))
            if status is None:
                raise NotFound(f"run {run_id} not found")
            if status != RunStatus.RUNNING.value:
                raise FailedPrecondition(
                    f"run {run_id} is {status}: metrics can only be logged while running"
                )
            insert = self._insert(RunMetricRow)
            stmt = insert.values(list(rows.values()))
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["run_id", "name", "split", "step"],
                    set_={"value": stmt.excluded.value, "logged_at": stmt.excluded.logged_at},
                )
            )
        return len(rows)

    def index_predictions(self, entries: Sequence[PredictionEntry]) -> int:
        unique = {(e.prediction_id, e.shadow): e for e in entries}
        values = [
            {
                "prediction_id": e.prediction_id,
                "shadow": e.shadow,
                "use_case": e.use_case,
                "model_name": e.model_name,
                "version": e.version,
                "alias": e.alias,
                "predicted_at": e.predicted_at,
                "trace_id": e.trace_id,
                "entity_id": e.entity_id,
            }
            for e in unique.values()
        ]
        inserted = 0
        with _database("the prediction index"), self.db.write() as session:
            for i in range(0, len(values), _INSERT_CHUNK):
                stmt = (
                    self._insert(PredictionRow)
                    .values(values[i : i + _INSERT_CHUNK])
                    .on_conflict_do_nothing(index_elements=["prediction_id", "shadow"])
                    .returning(PredictionRow.prediction_id)
                )
                # RETURNING lists the rows actually inserted (rowcount is not reliable here).
                inserted += len(session.execute(stmt).all())
        return inserted

    def _insert(self, table: type) -> Any:
        return pg_insert(table) if self.db.dialect == "postgresql" else sqlite_insert(table)

    # --- outbox (libs.bus.outbox.OutboxSource)
    def pending(self, limit: int = 100) -> list[tuple[int, Outgoing]]:
        with _database("the registry outbox"), self.db.read() as session:
            rows = session.scalars(
                select(OutboxRow).where(OutboxRow.published_at.is_(None)).order_by(OutboxRow.id).limit(limit)
            )
            return [(r.id, self._outgoing(r)) for r in rows]

    def _outgoing(self, row: OutboxRow) -> Outgoing:
        if row.kind == USECASE_CHANGED:
            return usecase_changed_event(_usecase_change(row.payload), self._usecases_topic)
        return alias_changed_event(_change(row.payload), self._topic)

    def mark_sent(self, keys: Sequence[int]) -> None:
        if not keys:
            return
        with _database("the registry outbox"), self.db.write() as session:
            session.execute(
                update(OutboxRow).where(OutboxRow.id.in_(list(keys))).values(published_at=self._clock())
            )

    # --- audit log, read whole
    def audit_chain(self, batch: int = 1000) -> Iterator[AuditRecord]:
        after = 0
        while True:
            with _database("the audit log"), self.db.read() as session:
                rows = [
                    _audit(r)
                    for r in session.scalars(
                        select(AuditRow)
                        .where(AuditRow.sequence > after)
                        .order_by(AuditRow.sequence)
                        .limit(batch)
                    )
                ]
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1].sequence

    def audit_head(self) -> tuple[int, str] | None:
        with _database("the audit log"), self.db.read() as session:
            head = session.get(AuditHeadRow, 1)
            if head is None:
                raise FailedPrecondition("registry database has no audit head: run the migrations")
            return None if head.sequence == 0 else (head.sequence, head.hash)

    def close(self) -> None:
        self.db.close()


def open_store(
    url: str,
    *,
    migrate: bool = True,
    promoted_topic: str = topics.MODEL_PROMOTED,
    usecases_topic: str = topics.USECASES,
    clock: Callable[[], datetime] = _utcnow,
) -> SqlStore:
    """A store on ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``), migrated to
    head unless ``migrate`` is false (read-only tools)."""
    with _database("the registry database"):
        db = Database(url)
    store = SqlStore(db, promoted_topic=promoted_topic, usecases_topic=usecases_topic, clock=clock)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
