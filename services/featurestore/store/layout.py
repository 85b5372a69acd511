"""Where the feature store keeps its files: Feast repo, offline datasets, training sets."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from libs.features import feature_versions
from libs.usecase import UseCase

# Columns of the offline feature rows besides the entity key and the features. Spec
# feature names start with a letter, so a leading "_" can never collide with one.
EVENT_TIMESTAMP = "_event_timestamp"
CREATED = "_created"
# Also a (String) field of each feature view: an online row tells which record it came from.
RECORD_ID = "_record_id"
DATASET_VERSION = "_dataset_version"
DATASET_URI = "_dataset_uri"
# The timestamp column of the entity rows given to get_historical_features (Feast's name).
ENTITY_TS = "event_timestamp"


def columns_digest(uc: UseCase) -> str:
    """A short digest of what the offline feature rows of ``uc`` hold: each model input with
    its definition's version, and the fairness attribute stored beside them."""
    fairness = uc.evaluation.fairness.attribute if uc.evaluation.fairness else ""
    doc = json.dumps([uc.entity.field, fairness, sorted(feature_versions(uc).items())])
    return hashlib.sha256(doc.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Layout:
    repo: Path
    data: Path

    def features_dir(self, uc: UseCase) -> Path:
        # Per definition of the stored columns, not per spec version: a changed definition
        # starts a new history instead of mixing schemas, while a new version of a spec that
        # changes only policies (drift, deployment...: the catalogue's live changes) keeps it.
        return self.data / "offline" / uc.name / f"f-{columns_digest(uc)}" / "features"

    def labels_dir(self, uc: UseCase) -> Path:
        return self.data / "offline" / uc.name / "labels"

    def training_dir(self, uc: UseCase) -> Path:
        return self.data / "training" / uc.name

    @property
    def faust_dir(self) -> Path:
        return self.data / "faust"
