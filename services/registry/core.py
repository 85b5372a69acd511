"""The registry's behaviour, independent of gRPC and Kafka: versions, aliases, policy, lineage.

Every state change runs in one serialised store transaction together with its audit
entries and, for alias moves, the outbox rows of its ``AliasChanged`` events, so a
crash leaves either all of it or none. Callers pass a :class:`Principal` (an RPC's
caller) or None (the registry acting on an event, audited as the ``registry`` service).
Methods are synchronous (SQLAlchemy); the servicer and consumers run them in threads.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from libs.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from libs.rpc.auth import Principal
from libs.sandbox import Limits
from libs.usecase import UseCase, UseCases
from services.registry import policy, reference, validate
from services.registry.artifact_check import validate_torchscript
from services.registry.artifacts import ArtifactStore, check_digest
from services.registry.audit import verify_chain
from services.registry.convert import lineage_to_json
from services.registry.domain import (
    CHAMPION,
    PREVIOUS,
    SYSTEM,
    Actor,
    Alias,
    AliasChange,
    AliasChangeKind,
    AuditDraft,
    AuditRecord,
    ChainReport,
    Evaluation,
    Lineage,
    ModelKey,
    ModelVersion,
    NewVersion,
    PredictionEntry,
    Signature,
    VersionKey,
    VersionStatus,
)
from services.registry.export import (
    INSTANCE_KINDS,
    ExportResult,
    InstanceKind,
    ServingBundle,
    TritonExporter,
)
from services.registry.store import RegistryStore, StoreTx

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def signature_of(uc: UseCase) -> Signature:
    """The I/O contract the spec implies (see export.py)."""
    outputs = (uc.label.field,) if uc.task == "regression" else tuple(str(c) for c in uc.label.classes or ())
    return Signature(tuple(uc.model_inputs()), outputs, uc.task)


@dataclass(frozen=True)
class AliasResult:
    alias: Alias | None
    previous_version: int
    audit_event_id: str
    changes: tuple[AliasChange, ...] = ()


@dataclass(frozen=True)
class EvaluationOutcome:
    version: ModelVersion
    recorded: bool
    promoted: bool
    changes: tuple[AliasChange, ...] = ()


@dataclass
class Registry:
    store: RegistryStore
    artifacts: ArtifactStore
    usecases: UseCases
    exporter: TritonExporter | None = None
    validate_artifacts: bool = True
    # Limits of the sandboxed child that loads and runs each artifact (its code is untrusted).
    sandbox_limits: Limits = Limits()
    clock: Callable[[], datetime] = utcnow
    # Called (from any thread) after a commit that queued AliasChanged events.
    on_alias_change: Callable[[], None] = field(default=lambda: None)

    # ------------------------------------------------------------ helpers
    def usecase(self, name: str, field: str = "use_case") -> UseCase:
        """The use case ``name`` (``InvalidArgument`` if malformed, ``UnknownUseCase`` if unknown)."""
        validate.use_case(name, field)
        return self.usecases.require(name, field)

    def _actor(self, principal: Principal | None, use_case: str) -> Actor:
        if principal is None:
            return SYSTEM
        return Actor(principal.subject, tuple(sorted(principal.roles_in(use_case))))

    def _audit(
        self,
        tx: StoreTx,
        action: str,
        actor: Actor,
        *,
        key: VersionKey | None = None,
        model: ModelKey | None = None,
        alias: str = "",
        reason: str = "",
        evidence: Sequence[str] = (),
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        model = model or (key.model if key else None)
        now = self.clock()
        return tx.append_audit(
            AuditDraft(
                action=action,
                actor=actor,
                use_case=model.use_case if model else "",
                model_name=model.name if model else "",
                version=key.version if key else 0,
                alias=alias,
                reason=reason,
                evidence_ids=tuple(dict.fromkeys(e for e in evidence if e)),
                details=dict(details or {}),
            ),
            int(now.timestamp() * 1_000_000),
        )

    def _move(
        self,
        tx: StoreTx,
        model: ModelKey,
        alias: str,
        new_version: int,
        kind: AliasChangeKind,
        actor: Actor,
        reason: str,
        evidence: Sequence[str],
    ) -> AliasChange:
        """Point ``alias`` at ``new_version`` (0: remove it), audited, with its event queued."""
        current = tx.get_alias(model, alias)
        old = current.version if current else 0
        now = self.clock()
        if new_version:
            tx.put_alias(model, alias, new_version, actor, reason, now)
        else:
            tx.delete_alias(model, alias)
        record = self._audit(
            tx,
            f"alias.{kind.value}",
            actor,
            key=VersionKey(model.use_case, model.name, new_version or old),
            alias=alias,
            reason=reason,
            evidence=evidence,
            details={"old_version": old, "new_version": new_version},
        )
        change = AliasChange(
            model.use_case,
            model.name,
            alias,
            new_version,
            old,
            kind,
            reason,
            actor,
            tuple(e for e in evidence if e),
            now,
            record.event_id,
        )
        tx.add_outbox(change, now)
        return change

    def _promote(
        self,
        tx: StoreTx,
        version: ModelVersion,
        kind: AliasChangeKind,
        actor: Actor,
        reason: str,
        evidence: Sequence[str],
    ) -> list[AliasChange]:
        """champion → previous, ``version`` → champion."""
        model = version.key.model
        current = tx.get_alias(model, CHAMPION)
        if current is not None and current.version == version.version:
            return []
        changes = []
        if current is not None:
            changes.append(
                self._move(
                    tx,
                    model,
                    PREVIOUS,
                    current.version,
                    kind,
                    actor,
                    f"was champion until version {version.version} was promoted",
                    evidence,
                )
            )
        changes.append(self._move(tx, model, CHAMPION, version.version, kind, actor, reason, evidence))
        return changes

    def _committed(self, changes: Sequence[AliasChange]) -> None:
        if changes:
            self.on_alias_change()

    def _ensure_servable(self, version: ModelVersion) -> None:
        """Before an alias points at ``version``: its artifact is stored and intact, so the
        gateway can fetch its serving bundle (NotFound or ArtifactCorrupted otherwise)."""
        self.artifacts.read(version.artifact_sha256)

    # ------------------------------------------------------------ versions
    def register_version(
        self,
        new: NewVersion,
        principal: Principal | None,
        *,
        artifact: bytes = b"",
        reference_profile: bytes = b"",
    ) -> ModelVersion:
        uc = self.usecase(new.use_case)
        validate.model_name(new.name)
        validate.ident(new.run_id, "run_id", required=False)
        validate.ident(new.idempotency_key, "idempotency_key", required=False)
        validate.metrics(new.metrics)
        if principal is not None:
            policy.require_scope(principal, uc.name)
        spec_signature = signature_of(uc)
        signature = new.signature or spec_signature
        if signature.input_names != spec_signature.input_names:
            raise InvalidArgument(
                "signature.input_names",
                f"must be the use case's model inputs {list(spec_signature.input_names)}",
            )
        if signature.task != uc.task:
            raise InvalidArgument("signature.task", f"must be the use case's task {uc.task!r}")
        if signature.n_outputs != spec_signature.n_outputs:
            raise InvalidArgument(
                "signature.output_names",
                f"must name {spec_signature.n_outputs} outputs for a {uc.task} task "
                f"(e.g. {list(spec_signature.output_names)})",
            )
        artifact_sha = self._store_artifact(artifact, new.artifact_sha256, signature)
        reference_sha = self._store_reference(reference_profile, new.reference_sha256, signature, uc.name)
        new = replace(new, artifact_sha256=artifact_sha, reference_sha256=reference_sha, signature=signature)
        actor = self._actor(principal, uc.name)
        model = ModelKey(new.use_case, new.name)
        with self.store.write() as tx:
            if new.idempotency_key:
                existing = tx.version_by_idempotency_key(model, new.idempotency_key)
                if existing is not None:
                    return existing
            owner = tx.model_use_case(new.name)
            if owner is None:
                tx.create_model(model, actor, self.clock())
                self._audit(tx, "model.created", actor, model=model, reason="first version registered")
            elif owner != new.use_case:
                raise InvalidArgument("model_name", f"model {new.name!r} belongs to use case {owner!r}")
            if new.run_id:
                run = tx.get_run(new.run_id)
                if run is None:
                    raise InvalidArgument("run_id", f"no run {new.run_id!r} (create it with CreateRun)")
                if run.use_case != new.use_case:
                    raise InvalidArgument(
                        "run_id", f"run {new.run_id!r} belongs to use case {run.use_case!r}"
                    )
            version = tx.add_version(new, actor, self.clock())
            self._audit(
                tx,
                "model_version.registered",
                actor,
                key=version.key,
                reason="registered as a candidate",
                evidence=[new.training_request_id, new.drift_report_id],
                details={
                    "artifact_sha256": artifact_sha,
                    "reference_sha256": reference_sha,
                    "run_id": new.run_id,
                    "training_request_id": new.training_request_id,
                    "drift_report_id": new.drift_report_id,
                    "code_version": new.code_version,
                    "signature": signature.to_json(),
                },
            )
        return version

    def _store_artifact(self, content: bytes, sha: str, signature: Signature) -> str:
        if content:
            expected = check_digest(sha, "artifact_sha256") if sha else ""
            if expected and self._digest(content) != expected:
                raise InvalidArgument("artifact_sha256", "does not match artifact_content")
            if self.validate_artifacts:
                validate_torchscript(content, signature, "artifact_content", self.sandbox_limits)
            return self.artifacts.put(content).sha256
        if not sha:
            raise InvalidArgument("artifact_content", "the model is required (content or artifact_sha256)")
        digest = check_digest(sha, "artifact_sha256")
        if not self.artifacts.exists(digest):
            raise NotFound(f"artifact_sha256: no artifact {digest} (upload it first)")
        if self.validate_artifacts:
            validate_torchscript(
                self.artifacts.read(digest), signature, "artifact_sha256", self.sandbox_limits
            )
        return digest

    def _store_reference(self, content: bytes, sha: str, signature: Signature, use_case: str) -> str:
        field = "reference_profile_content"
        if not content and not sha:
            return ""
        if not content:
            sha = check_digest(sha, "reference_profile_sha256")
            if not self.artifacts.exists(sha):
                raise NotFound(f"reference_profile_sha256: no artifact {sha}")
            content, field = self.artifacts.read(sha), "reference_profile_sha256"
        reference.check_reference(content, signature, use_case, field)
        return self.artifacts.put(content).sha256

    @staticmethod
    def _digest(content: bytes) -> str:
        return hashlib.sha256(content).hexdigest()

    def get_version(self, key: VersionKey) -> ModelVersion:
        with self.store.read() as tx:
            version = tx.get_version(key)
        if version is None:
            raise NotFound(f"model version {key} not found")
        return version

    def list_versions(
        self,
        use_case: str,
        name: str = "",
        status: VersionStatus | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[ModelVersion]:
        validate.use_case(use_case)
        with self.store.read() as tx:
            return tx.list_versions(use_case, name, status, offset, limit)

    # ------------------------------------------------------------ evaluations and approvals
    def apply_evaluation(
        self,
        evaluation: Evaluation,
        *,
        principal: Principal | None = None,
        event_id: str = "",
        source: str = "",
    ) -> EvaluationOutcome:
        """Record a verdict and act by the use case's policy; idempotent by event id and report id."""
        # Pass or fail is the registry's own reading of the gates, never the flag sent with them.
        evaluation = replace(evaluation, passed=policy.verdict_of(evaluation.gates))
        uc = self.usecase(evaluation.model.use_case, "model.use_case")
        validate.ident(evaluation.report_id, "report_id")
        if principal is not None:
            policy.require_scope(principal, uc.name)
        actor = self._actor(principal, uc.name)
        version = self.get_version(evaluation.model)
        if (
            evaluation.passed
            and uc.deployment.promotion == "auto"
            and version.status is VersionStatus.CANDIDATE
        ):
            self._ensure_servable(version)
        changes: list[AliasChange] = []
        with self.store.write() as tx:
            if event_id and tx.is_processed(event_id):
                return EvaluationOutcome(version, recorded=False, promoted=False)
            if tx.get_evaluation(evaluation.report_id) is not None:
                if event_id:
                    tx.mark_processed(event_id, source, self.clock())
                return EvaluationOutcome(version, recorded=False, promoted=False)
            current = tx.get_version(evaluation.model)
            assert current is not None
            tx.add_evaluation(evaluation, self.clock())
            failed = [g.gate for g in evaluation.gates if not policy.gate_passed(g)]
            decision = None
            if current.status is VersionStatus.CANDIDATE:
                decision = policy.decide_on_evaluation(uc.deployment.promotion, evaluation.passed, failed)
                tx.set_status(current.key, decision.status)
            reason = decision.reason if decision else f"recorded; status stays {current.status.value}"
            self._audit(
                tx,
                "model_version.evaluated",
                actor,
                key=current.key,
                reason=reason,
                evidence=[evaluation.report_id],
                details={
                    "passed": evaluation.passed,
                    "failed_gates": failed,
                    "policy": uc.deployment.promotion,
                    "from_status": current.status.value,
                    "to_status": (decision.status if decision else current.status).value,
                    "champion_version": evaluation.champion_version,
                    "metrics": {m.name: m.value for m in evaluation.metrics},
                    "trigger_event_id": event_id,
                },
            )
            if decision is not None and decision.promote:
                promoted = tx.get_version(current.key)
                assert promoted is not None
                changes = self._promote(
                    tx, promoted, AliasChangeKind.PROMOTE, actor, decision.reason, [evaluation.report_id]
                )
            if event_id:
                tx.mark_processed(event_id, source, self.clock())
            after = tx.get_version(current.key)
        self._committed(changes)
        assert after is not None
        return EvaluationOutcome(after, recorded=True, promoted=bool(changes), changes=tuple(changes))

    def approve(
        self,
        key: VersionKey,
        approve: bool,
        principal: Principal,
        comment: str = "",
        evidence: Sequence[str] = (),
    ) -> tuple[ModelVersion, str]:
        """An approver's decision on a PENDING_APPROVAL version; approval promotes it."""
        uc = self.usecase(key.use_case, "ref.use_case")
        policy.require_scope(principal, uc.name)
        policy.require_approver(principal, uc.name, "approve or reject a model version")
        actor = self._actor(principal, uc.name)
        version = self.get_version(key)
        if version.status is not VersionStatus.PENDING_APPROVAL:
            raise FailedPrecondition(
                f"{key} is {version.status.value}: only a version pending approval "
                "can be approved or rejected"
            )
        if approve:
            self._ensure_servable(version)
        changes: list[AliasChange] = []
        with self.store.write() as tx:
            current = tx.get_version(key)
            assert current is not None
            if current.status is not VersionStatus.PENDING_APPROVAL:
                raise FailedPrecondition(f"{key} is {current.status.value}: it was decided meanwhile")
            status = VersionStatus.APPROVED if approve else VersionStatus.REJECTED
            tx.set_status(key, status)
            verb = "approved" if approve else "rejected"
            evidence = [*evidence, current.evaluation_report_id]
            record = self._audit(
                tx,
                f"model_version.{verb}",
                actor,
                key=key,
                reason=comment or f"{verb} by {principal.subject}",
                evidence=evidence,
                details={"from_status": current.status.value, "to_status": status.value},
            )
            if approve:
                approved = tx.get_version(key)
                assert approved is not None
                changes = self._promote(
                    tx,
                    approved,
                    AliasChangeKind.PROMOTE,
                    actor,
                    f"approved by {principal.subject}" + (f": {comment}" if comment else ""),
                    evidence,
                )
            after = tx.get_version(key)
        self._committed(changes)
        assert after is not None
        return after, record.event_id

    # ------------------------------------------------------------ aliases
    def get_alias(self, model: ModelKey, alias: str) -> tuple[Alias, ModelVersion]:
        validate.alias(alias)
        with self.store.read() as tx:
            found = tx.get_alias(model, alias)
            if found is None:
                raise NotFound(f"alias {alias!r} of {model.use_case}/{model.name} is not set")
            version = tx.get_version(VersionKey(model.use_case, model.name, found.version))
        assert version is not None
        return found, version

    def set_alias(
        self,
        key: VersionKey,
        alias: str,
        principal: Principal | None,
        *,
        reason: str = "",
        evidence: Sequence[str] = (),
        expected_version: int | None = None,
    ) -> AliasResult:
        """Point ``alias`` at a version by hand (compare-and-set with ``expected_version``;
        0 means "unless unset"). Setting ``champion`` moves the old one to ``previous``."""
        uc = self.usecase(key.use_case)
        validate.model_name(key.name)
        validate.alias(alias)
        validate.version(key.version)
        if principal is not None:
            policy.require_scope(principal, uc.name)
            if alias == CHAMPION and uc.deployment.promotion == "approval":
                policy.require_approver(principal, uc.name, "set the champion under the approval policy")
        actor = self._actor(principal, uc.name)
        version = self.get_version(key)
        policy.check_alias_target(alias, version)
        if alias in policy.SERVING_ALIASES:
            self._ensure_servable(version)
        with self.store.write() as tx:
            current = tx.get_alias(key.model, alias)
            old = current.version if current else 0
            if expected_version is not None and expected_version != old:
                raise FailedPrecondition(
                    f"alias {alias!r} points at version {old}, not {expected_version} "
                    "(compare-and-set failed)"
                )
            fresh = tx.get_version(key)
            assert fresh is not None
            policy.check_alias_target(alias, fresh)
            if old == key.version:
                return AliasResult(current, old, "")
            reason = reason or f"set by {actor.subject}"
            if alias == CHAMPION:
                changes = self._promote(tx, fresh, AliasChangeKind.SET, actor, reason, evidence)
            else:
                changes = [
                    self._move(
                        tx, key.model, alias, key.version, AliasChangeKind.SET, actor, reason, evidence
                    )
                ]
            now_alias = tx.get_alias(key.model, alias)
        self._committed(changes)
        return AliasResult(now_alias, old, changes[-1].audit_event_id, tuple(changes))

    def delete_alias(
        self,
        model: ModelKey,
        alias: str,
        principal: Principal | None,
        *,
        reason: str = "",
        expected_version: int | None = None,
    ) -> AliasResult:
        uc = self.usecase(model.use_case)
        validate.alias(alias)
        if principal is not None:
            policy.require_scope(principal, uc.name)
            if alias == CHAMPION and uc.deployment.promotion == "approval":
                policy.require_approver(principal, uc.name, "remove the champion under the approval policy")
        actor = self._actor(principal, uc.name)
        with self.store.write() as tx:
            current = tx.get_alias(model, alias)
            old = current.version if current else 0
            if expected_version is not None and expected_version != old:
                raise FailedPrecondition(
                    f"alias {alias!r} points at version {old}, not {expected_version} "
                    "(compare-and-set failed)"
                )
            if current is None:
                return AliasResult(None, 0, "")
            change = self._move(
                tx,
                model,
                alias,
                0,
                AliasChangeKind.DELETE,
                actor,
                reason or f"removed by {actor.subject}",
                (),
            )
        self._committed([change])
        return AliasResult(None, old, change.audit_event_id, (change,))

    def rollback(
        self,
        model: ModelKey,
        principal: Principal | None,
        *,
        alias: str = CHAMPION,
        to_version: int = 0,
        reason: str = "",
        evidence: Sequence[str] = (),
        only_if_current: int = 0,
        event_id: str = "",
        source: str = "",
    ) -> AliasResult | None:
        """Move ``alias`` back to ``to_version`` (0: the ``previous`` version). The version rolled
        back from is archived, so no policy promotes it again, and ``previous`` is cleared when it
        is what the alias points at now. With ``only_if_current`` (a monitor alarm about that
        version) nothing happens unless the alias still points at it: returns None then, as for
        an event already processed."""
        uc = self.usecase(model.use_case)
        validate.model_name(model.name)
        validate.alias(alias)
        if principal is not None:
            policy.require_scope(principal, uc.name)
        actor = self._actor(principal, uc.name)
        with self.store.read() as tx:
            if event_id and tx.is_processed(event_id):
                return None
            current = tx.get_alias(model, alias)
            target = to_version
            if not target:
                prev = tx.get_alias(model, PREVIOUS)
                target = prev.version if prev else 0
            target_version = (
                tx.get_version(VersionKey(model.use_case, model.name, target)) if target else None
            )
        if current is None:
            raise FailedPrecondition(
                f"alias {alias!r} of {model.use_case}/{model.name} is not set: nothing to roll back"
            )
        if only_if_current and current.version != only_if_current:
            log.info(
                "rollback of %s/%s %s ignored: it points at %d, the alarm was about %d",
                model.use_case,
                model.name,
                alias,
                current.version,
                only_if_current,
            )
            self._mark(event_id, source)
            return None
        if not target:
            raise FailedPrecondition(
                f"no 'previous' version of {model.use_case}/{model.name} to roll back to"
            )
        if target_version is None:
            raise NotFound(f"model version {model.use_case}/{model.name}/v{target} not found")
        if target == current.version:
            raise FailedPrecondition(f"alias {alias!r} already points at version {target}")
        policy.check_alias_target(alias, target_version)
        self._ensure_servable(target_version)
        reason = reason or f"rollback requested by {actor.subject}"
        with self.store.write() as tx:
            if event_id and tx.is_processed(event_id):
                return None
            now_current = tx.get_alias(model, alias)
            if now_current is None or now_current.version != current.version:
                raise FailedPrecondition(f"alias {alias!r} moved meanwhile; retry")
            changes = [
                self._move(tx, model, alias, target, AliasChangeKind.ROLLBACK, actor, reason, evidence)
            ]
            bad = VersionKey(model.use_case, model.name, current.version)
            tx.set_status(bad, VersionStatus.ARCHIVED)
            self._audit(
                tx,
                "model_version.archived",
                actor,
                key=bad,
                reason=f"rolled back: {reason}",
                evidence=evidence,
                details={"alias": alias, "replaced_by": target},
            )
            prev = tx.get_alias(model, PREVIOUS)
            if prev is not None and prev.version == target:
                changes.append(
                    self._move(
                        tx,
                        model,
                        PREVIOUS,
                        0,
                        AliasChangeKind.ROLLBACK,
                        actor,
                        f"version {target} is {alias} again",
                        evidence,
                    )
                )
            if event_id:
                tx.mark_processed(event_id, source, self.clock())
            result = tx.get_alias(model, alias)
        self._committed(changes)
        return AliasResult(result, current.version, changes[0].audit_event_id, tuple(changes))

    def _mark(self, event_id: str, source: str) -> None:
        if not event_id:
            return
        with self.store.write() as tx:
            if not tx.is_processed(event_id):
                tx.mark_processed(event_id, source, self.clock())

    # ------------------------------------------------------------ lineage, audit, export
    def lineage(self, key: VersionKey) -> Lineage:
        with self.store.read() as tx:
            version = tx.get_version(key)
            if version is None:
                raise NotFound(f"model version {key} not found")
            run = tx.get_run(version.run_id) if version.run_id else None
            return Lineage(version, run, tuple(tx.evaluations_of(key)), tuple(tx.audit_of(key)))

    def lineage_of_prediction(self, prediction_id: str) -> Lineage:
        entry = self.prediction(prediction_id)
        lineage = self.lineage(VersionKey(entry.use_case, entry.model_name, entry.version))
        return replace(lineage, prediction=entry)

    def prediction(self, prediction_id: str) -> PredictionEntry:
        """The served prediction ``prediction_id`` from the index (NotFound until indexed)."""
        validate.ident(prediction_id, "prediction_id")
        with self.store.read() as tx:
            entry = tx.get_prediction(prediction_id)
        if entry is None:
            raise NotFound(f"prediction {prediction_id} is not in the prediction index")
        return entry

    def _lineage_json(self, key: VersionKey) -> dict[str, Any]:
        return lineage_to_json(self.lineage(key))

    def list_audit(
        self,
        use_case: str = "",
        model: ModelKey | None = None,
        version: int = 0,
        after_sequence: int = 0,
        limit: int = 100,
    ) -> list[AuditRecord]:
        with self.store.read() as tx:
            return tx.list_audit(use_case, model, version, after_sequence, limit)

    def verify_audit(self) -> ChainReport:
        return verify_chain(self.store.audit_chain(), self.store.audit_head())

    def export(
        self, key: VersionKey, principal: Principal | None, destination: Path | None = None
    ) -> ExportResult:
        version = self.get_version(key)
        policy.check_servable(version)  # an export is a Triton repository entry: loadable
        actor = self._actor(principal, key.use_case)
        if self.exporter is None:
            raise FailedPrecondition("this registry has no export area configured")
        try:
            result = self.exporter.export(version, destination, lineage=self._lineage_json(key))
        except OSError as exc:
            raise Unavailable(f"cannot write the export: {exc}") from exc
        if result.written:
            with self.store.write() as tx:
                self._audit(
                    tx,
                    "model_version.exported",
                    actor,
                    key=key,
                    reason="export requested",
                    details={
                        "repository": str(result.repository),
                        "path": str(result.version_dir),
                        "sha256": result.sha256,
                    },
                )
        return result

    def serving_bundle(self, key: VersionKey, instance_kind: str = "") -> ServingBundle:
        """What Triton needs to serve ``key`` (config for ``instance_kind``, "" the configured
        one, and its files as stored blobs): the gateway loads it through Triton's API."""
        if instance_kind and instance_kind not in INSTANCE_KINDS:
            raise InvalidArgument("instance_kind", f"must be one of {', '.join(INSTANCE_KINDS)} or empty")
        if self.exporter is None:
            raise FailedPrecondition("this registry serves no Triton bundles (no exporter configured)")
        version = self.get_version(key)
        policy.check_servable(version)
        kind: InstanceKind | None = "gpu" if instance_kind == "gpu" else "cpu" if instance_kind else None
        return self.exporter.bundle(version, kind)

    def reference_profile(self, key: VersionKey) -> tuple[ModelVersion, bytes]:
        version = self.get_version(key)
        if not version.reference_sha256:
            raise NotFound(f"{key} was registered without a reference profile")
        return version, self.artifacts.read(version.reference_sha256)

    def index_predictions(self, entries: Sequence[PredictionEntry]) -> int:
        return self.store.index_predictions(entries)
