"""Feature definitions of a use case as pure functions, shared by the feature store and serving.

>>> from libs.features import FeatureComputer, feature_version
>>> computer = FeatureComputer(usecase)
>>> outcome = computer.apply(state, fields, event_time_us, record_id)   # one record
>>> outcome.values                     # {model input column: float | None}
>>> feature_version(usecase, "loan_mean_10m")   # short hash of its definition

Row transforms (:mod:`libs.features.transforms`) need one record; windowed aggregates
(:mod:`libs.features.windows`) need the entity's recent records, kept in a JSON-able
:class:`EntityState`. Nothing here does I/O.
"""

from __future__ import annotations

from libs.features.compute import Applied, Duplicate, FeatureComputer
from libs.features.transforms import FeatureError, RowPlan, row_features, to_number
from libs.features.version import (
    FeatureColumn,
    feature_of_column,
    feature_refs,
    feature_version,
    feature_versions,
)
from libs.features.windows import EntityState, aggregate

__all__ = [
    "Applied",
    "Duplicate",
    "EntityState",
    "FeatureColumn",
    "FeatureError",
    "FeatureComputer",
    "RowPlan",
    "aggregate",
    "feature_of_column",
    "feature_refs",
    "feature_version",
    "feature_versions",
    "row_features",
    "to_number",
]
