"""Topic names of the loop, in one place."""

from __future__ import annotations

RECORDS = "aif.records"
DEAD_LETTER = "aif.deadletter"
QUALITY = "aif.quality"
FEATURES_WRITTEN = "aif.features.written"
TRAINING_REQUESTED = "aif.training.requested"
MODEL_TRAINED = "aif.model.trained"
MODEL_EVALUATED = "aif.model.evaluated"
MODEL_PROMOTED = "aif.model.promoted"
DRIFT_DETECTED = "aif.drift.detected"
PREDICTIONS = "aif.predictions"
FEEDBACK = "aif.feedback"
# monitor → registry: aifactory.monitor.v1.RollbackRequested
ROLLBACK_REQUESTED = "aif.rollback.requested"
# registry → every service: aifactory.registry.v1.UseCaseChanged, keyed by use case. The
# catalogue: compacted (each key keeps its latest entry, for ever), read from the start.
USECASES = "aif.usecases"
# registry → auditors: signed checkpoints of the audit chain (JSON; services/registry/
# checkpoints.py). Append-only: the registry writes, and may not delete or alter it.
AUDIT_CHECKPOINTS = "aif.audit.checkpoints"

# Topics whose settings differ from the broker's defaults, with their partition count
# and configs: whoever creates one (``aif infra``, the registry, a follower) creates it so
# (:func:`libs.bus.admin.ensure_topic`). A catalogue on a default topic would be deleted
# after the broker's retention.
PARTITIONS = {USECASES: 1, AUDIT_CHECKPOINTS: 1}
CONFIGS = {
    USECASES: {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
    # Append-only in practice: nothing is compacted away or expires.
    AUDIT_CHECKPOINTS: {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
}


def raw(use_case: str) -> str:
    """The raw topic a use case's producers write to."""
    return f"aif.{use_case}.raw"
