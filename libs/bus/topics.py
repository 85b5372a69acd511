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


def raw(use_case: str) -> str:
    """The raw topic a use case's producers write to."""
    return f"aif.{use_case}.raw"
