"""Micro-batched writes: feature rows to Feast's online store and to the offline
parquet history, labels to the offline labels dataset.

Each call writes one micro-batch and returns only when it is durable, so the stream
may then record the batch as applied. Both writes are idempotent: the online store
keeps one row per entity (the newest, overwritten in place) and the offline datasets
skip record ids they already hold — a replay after a crash changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from libs.usecase import UseCase
from services.featurestore.domain import FeatureRow, LabelRow
from services.featurestore.store.layout import RECORD_ID, Layout
from services.featurestore.store.offline import ParquetDataset
from services.featurestore.store.online_writer import InProcessWriter, OnlineWriter
from services.featurestore.store.rows import feature_schema, feature_table, label_schema, label_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteResult:
    online_rows: int
    offline_rows: int
    label_rows: int


class FeatureWriter:
    def __init__(
        self,
        layout: Layout,
        usecases: dict[str, UseCase],
        store: Any,
        *,
        compact_at: int = 32,
        online: OnlineWriter | None = None,
    ) -> None:
        self._usecases = usecases
        self._layout = layout
        self._compact_at = compact_at
        self.online = online or InProcessWriter(store)
        self.features = {
            name: ParquetDataset(
                layout.features_dir(uc), feature_schema(uc), RECORD_ID, compact_at=compact_at
            )
            for name, uc in usecases.items()
        }
        self.labels = {
            name: ParquetDataset(layout.labels_dir(uc), label_schema(uc), "key", compact_at=compact_at)
            for name, uc in usecases.items()
        }

    def take_up(self, uc: UseCase) -> None:
        """Open the offline datasets of a use case applied while running (a new version of
        one keeps them: its schema is the same, see libs.usecase.compat)."""
        if uc.name not in self.features:
            self.features[uc.name] = ParquetDataset(
                self._layout.features_dir(uc), feature_schema(uc), RECORD_ID, compact_at=self._compact_at
            )
            self.labels[uc.name] = ParquetDataset(
                self._layout.labels_dir(uc), label_schema(uc), "key", compact_at=self._compact_at
            )
        self._usecases[uc.name] = uc

    def write(self, features: list[FeatureRow], labels: list[LabelRow]) -> WriteResult:
        """Write one micro-batch (blocking: run it in a worker thread)."""
        online = offline = written_labels = 0
        created = int(time.time() * 1_000_000)
        by_uc: dict[str, list[FeatureRow]] = defaultdict(list)
        for row in features:
            by_uc[row.use_case].append(row)
        for name, rows in by_uc.items():
            uc = self._usecases[name]
            online += self._write_online(uc, rows, created)
            offline += self.features[name].append(feature_table(uc, rows, created))
        labels_by_uc: dict[str, list[LabelRow]] = defaultdict(list)
        for label in labels:
            labels_by_uc[label.use_case].append(label)
        for name, label_rows in labels_by_uc.items():
            written_labels += self.labels[name].append(label_table(self._usecases[name], label_rows))
        return WriteResult(online, offline, written_labels)

    def _write_online(self, uc: UseCase, rows: list[FeatureRow], created: int) -> int:
        # One row per entity: the newest of the batch (a late record never overwrites).
        latest: dict[str, FeatureRow] = {}
        for row in rows:
            if row.newest:
                prev = latest.get(row.entity_id)
                if prev is None or row.event_time_us >= prev.event_time_us:
                    latest[row.entity_id] = row
        if not latest:
            return 0
        self.online.write(uc.name, feature_table(uc, list(latest.values()), created))
        return len(latest)
