"""The feature store's data plane: one object the servicer (and, in-process, the trainer) calls.

>>> core = FeatureStoreCore.open(settings)          # generates + applies the Feast repo
>>> uc, columns, rows = core.online("loan_approval", ["a00001"])
>>> ts = core.training_set("loan_approval", start, end)   # TrainingSet(path, row_count, ...)

Both calls block (Feast is synchronous): from async code run them in a thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from libs.errors import Unavailable
from libs.usecase import UseCase, UseCases
from services.featurestore.settings import FeatureStoreSettings
from services.featurestore.store import feast_repo
from services.featurestore.store.layout import Layout
from services.featurestore.store.online import OnlineReader, OnlineRow
from services.featurestore.store.online_writer import ChildProcessWriter, InProcessWriter, OnlineWriter
from services.featurestore.store.writer import FeatureWriter
from services.featurestore.training import TrainingSet, TrainingSetBuilder

log = logging.getLogger(__name__)
# Reads of the offline store that race with its compaction are retried this many times.
TRAINING_SET_ATTEMPTS = 3


@dataclass
class FeatureStoreCore:
    usecases: UseCases
    layout: Layout
    writer: FeatureWriter
    reader: OnlineReader
    training: TrainingSetBuilder
    # The readers' Feast ``FeatureStore`` (for direct Feast calls, e.g. in tests and tools).
    feast: Any
    settings: FeatureStoreSettings | None = None

    @classmethod
    def open(
        cls, settings: FeatureStoreSettings, specs: Mapping[str, UseCase] | None = None
    ) -> FeatureStoreCore:
        """Generate the Feast repo from the specs (the catalogue's at start), apply it, open
        the offline datasets."""
        usecases = UseCases(specs or {})
        layout = Layout(settings.feast_repo.resolve(), settings.data_dir.resolve())
        # Made here too: with no use case yet, nothing below creates it (faust keeps its state in it).
        layout.data.mkdir(parents=True, exist_ok=True)
        feast_repo.generate(
            layout,
            usecases,
            project=settings.feast_project,
            online_store=settings.online_store,
            redis_url=settings.redis_url,
        )
        # Two stores: the writer's and the readers' each hold their own online-store connection.
        write_store = feast_repo.open_store(layout, apply=True)
        read_store: Any = feast_repo.open_store(layout)
        online: OnlineWriter
        if settings.online_writer == "process" and settings.stream_enabled:
            online = ChildProcessWriter(str(layout.repo))
            online.start()
        else:
            online = InProcessWriter(write_store)
        writer = FeatureWriter(
            layout, usecases, write_store, compact_at=settings.compact_files, online=online
        )
        training = TrainingSetBuilder(layout, read_store, writer.features, writer.labels)
        log.info(
            "feature store ready: %s (online store %s)", ", ".join(sorted(usecases)), settings.online_store
        )
        return cls(usecases, layout, writer, OnlineReader(read_store), training, read_store, settings)

    def take_up(self, uc: UseCase) -> None:
        """Build the features of a use case applied while running (blocking: run it in a
        thread): its Feast objects generated and applied (a new version: applied again), its
        offline datasets opened; it is served (``usecases``) once all that is done."""
        assert self.settings is not None, "opened without settings"
        specs = {**self.usecases, uc.name: uc}
        feast_repo.generate(
            self.layout,
            specs,
            project=self.settings.feast_project,
            online_store=self.settings.online_store,
            redis_url=self.settings.redis_url,
        )
        # Applied through a store of its own; the readers' one then reloads the registry.
        feast_repo.open_store(self.layout, apply=True)
        self.feast.refresh_registry()
        self.writer.take_up(uc)
        self.usecases[uc.name] = uc
        log.info("feature store: %s v%d applied (feature view %s)", uc.name, uc.version, uc.name)

    def drop(self, name: str) -> None:
        """A retired use case: no longer served; its stored features stay on disk."""
        self.usecases.pop(name, None)

    def close(self) -> None:
        self.writer.online.close()

    def online(
        self, use_case: str, entity_ids: Sequence[str], feature_names: Sequence[str] = ()
    ) -> tuple[UseCase, list[str], list[OnlineRow]]:
        uc = self.usecases.require(use_case)
        columns = self.reader.columns(uc, feature_names)
        return uc, columns, self.reader.read(uc, entity_ids, columns)

    def training_set(
        self, use_case: str, start: datetime, end: datetime, feature_names: Sequence[str] = ()
    ) -> TrainingSet:
        uc = self.usecases.require(use_case)
        columns = self.reader.columns(uc, feature_names)
        for attempt in range(TRAINING_SET_ATTEMPTS):
            try:
                return self.training.build(uc, start, end, columns)
            except FileNotFoundError:
                # The offline writer compacts small parquet files: a file listed by Feast's
                # reader can be gone when it is opened. A second look sees the compacted one.
                if attempt == TRAINING_SET_ATTEMPTS - 1:
                    raise Unavailable(
                        f"training set for {use_case}: offline files kept changing while being read"
                    ) from None
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")
