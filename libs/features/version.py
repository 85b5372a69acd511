"""Feature versions: a short hash of a feature's definition and its spec's version.

A model records the versions of the features it was trained on; serving compares them
with the versions it reads online, so a changed definition is never fed silently.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from libs.usecase import AggregateFeature, RowFeature, UseCase


@dataclass(frozen=True)
class FeatureColumn:
    """One model input column: its Feast view, name, the spec feature it comes from, version."""

    view: str
    name: str
    feature: str
    version: str


def _definition(uc: UseCase, name: str) -> RowFeature | AggregateFeature:
    features: list[RowFeature | AggregateFeature] = [*uc.features.row, *uc.features.aggregates]
    for f in features:
        if f.name == name:
            return f
    raise KeyError(name)


def feature_version(uc: UseCase, name: str) -> str:
    """Version of spec feature ``name`` (or of the feature a one-hot column belongs to)."""
    feature = _definition(uc, feature_of_column(uc, name))
    body: dict[str, object] = {
        "use_case": uc.name,
        "spec_version": uc.version,
        "definition": feature.model_dump(mode="json"),
    }
    if isinstance(feature, RowFeature) and feature.transform == "one_hot":
        body["categories"] = [str(c) for c in uc.fields[feature.source].enum or ()]
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return digest[:12]


def feature_of_column(uc: UseCase, column: str) -> str:
    """The spec feature a model input column comes from (``elevel__2`` → ``elevel``)."""
    for f in uc.features.row:
        if f.name == column:
            return f.name
        if f.transform == "one_hot" and column.startswith(f.name + "__"):
            if column[len(f.name) + 2 :] in {str(c) for c in uc.fields[f.source].enum or ()}:
                return f.name
    for a in uc.features.aggregates:
        if a.name == column:
            return a.name
    raise KeyError(column)


def feature_versions(uc: UseCase) -> dict[str, str]:
    """Version of every model input column, by column name."""
    return {c: feature_version(uc, c) for c in uc.model_inputs()}


def feature_refs(uc: UseCase) -> list[FeatureColumn]:
    """Every model input column of ``uc`` with its view (the use case's name) and version."""
    return [
        FeatureColumn(uc.name, c, feature_of_column(uc, c), feature_version(uc, c)) for c in uc.model_inputs()
    ]
