"""Point-in-time-correct training sets.

Examples are the labelled records of a use case with event time in ``[start, end)``
whose label was known by ``end`` (``label_time <= end``: a label observed after the
cutoff is not used — labels are joined at label time). Each example gets the
features *as of its event time* from Feast's ``get_historical_features``: the newest
feature row of its entity with ``event_timestamp <= event time`` (and within the
view's ttl), so no value from after the example can leak in.

Feast's file offline store silently drops an entity row that has no feature row
inside that window (and fills nulls for an entity it has never seen). Both are caught
here: the rows Feast returns are counted against the rows asked for, and every
example must have a feature row of its own in the window; otherwise
:class:`TrainingSetIncomplete` names how many and which.

The set is written as parquet — ``entity_id, event_time, label_time, label``, the
model input columns as float64, then (when the spec has a fairness gate) the example's
own fairness attribute as text — under a name derived from its content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from libs.errors import FailedPrecondition
from libs.features import FeatureColumn, feature_refs
from libs.usecase import UseCase
from services.featurestore.store.layout import (
    DATASET_URI,
    DATASET_VERSION,
    ENTITY_TS,
    EVENT_TIMESTAMP,
    RECORD_ID,
    Layout,
)
from services.featurestore.store.offline import ParquetDataset
from services.featurestore.store.rows import TS, attribute_column

LABEL = "label"
META_COLUMNS = ["entity_id", "event_time", "label_time", LABEL]
_SHOW = 10


class TrainingSetIncomplete(FailedPrecondition):
    """Examples would be missing from a training set; ``missing`` lists (entity_id, event_time)."""

    def __init__(self, use_case: str, total: int, missing: list[tuple[str, datetime]], why: str) -> None:
        shown = ", ".join(f"{e}@{t.isoformat()}" for e, t in missing[:_SHOW])
        more = f" and {len(missing) - _SHOW} more" if len(missing) > _SHOW else ""
        super().__init__(
            f"training set for {use_case}: {len(missing)} of {total} examples {why}: {shown}{more}"
        )
        self.use_case = use_case
        self.total = total
        self.missing = missing


@dataclass(frozen=True)
class TrainingSet:
    use_case: str
    path: Path
    row_count: int
    content_hash: str
    features: list[FeatureColumn]
    # Raw dataset versions (and their URIs) of the records behind the features.
    datasets: list[tuple[str, str]]
    label: str = LABEL
    format: str = "parquet"

    @property
    def uri(self) -> str:
        return self.path.as_uri()


def _us(column: pd.Series) -> pd.Series:
    """Timestamps as UTC microseconds, whatever unit pyarrow or Feast handed back."""
    return pd.to_datetime(column, utc=True).astype("datetime64[us, UTC]")


def content_hash(df: pd.DataFrame) -> str:
    digest = hashlib.sha256(json.dumps([[c, str(t)] for c, t in df.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


class TrainingSetBuilder:
    def __init__(
        self,
        layout: Layout,
        store: Any,
        features: dict[str, ParquetDataset],
        labels: dict[str, ParquetDataset],
    ) -> None:
        self._layout = layout
        self._store = store
        self._features = features
        self._labels = labels

    def examples(self, uc: UseCase, start: datetime, end: datetime) -> pd.DataFrame:
        """Labelled examples with event time in [start, end) and label known by ``end``."""
        ts_start, ts_end = pa.scalar(start, type=TS), pa.scalar(end, type=TS)
        table = self._labels[uc.name].read(
            filter=(pc.field("event_time") >= ts_start)
            & (pc.field("event_time") < ts_end)
            & (pc.field("label_time") <= ts_end)
        )
        df = table.to_pandas()
        df["event_time"] = _us(df["event_time"])
        df["label_time"] = _us(df["label_time"])
        return df.sort_values(["event_time", "entity_id", "key"], kind="stable").reset_index(drop=True)

    def build(
        self, uc: UseCase, start: datetime, end: datetime, columns: Sequence[str] | None = None
    ) -> TrainingSet:
        """Build, check and write the training set (blocking: call from a thread)."""
        columns = list(columns or uc.model_inputs())
        examples = self.examples(uc, start, end)
        if examples.empty:
            raise FailedPrecondition(
                f"training set for {uc.name}: no labelled examples with event time in "
                f"[{start.isoformat()}, {end.isoformat()}) and label known by the end"
            )
        key = uc.entity.field
        # Feast keys rows by (entity, timestamp): ask once per pair, join back to every example.
        pairs = (
            examples[["entity_id", "event_time"]]
            .drop_duplicates()
            .rename(columns={"entity_id": key, "event_time": ENTITY_TS})
            .reset_index(drop=True)
        )
        dataset = self._features[uc.name]
        with dataset.snapshot():
            history = self._history(uc, dataset, pairs, start, end)
            self._check_rows_exist(uc, pairs, history)
            job = self._store.get_historical_features(
                entity_df=pairs, features=[f"{uc.name}:{c}" for c in columns]
            )
            got = job.to_df()
        self._check_feast_kept_all(uc, pairs, got)
        got = got.rename(columns={key: "entity_id", ENTITY_TS: "event_time"})
        got["event_time"] = _us(got["event_time"])
        merged = examples.merge(
            got[["entity_id", "event_time", *columns]],
            on=["entity_id", "event_time"],
            how="left",
            validate="many_to_one",
        )
        out = merged[META_COLUMNS + columns].copy()
        for c in columns:
            out[c] = out[c].astype("float64")
        self._add_attribute(uc, dataset, examples, out)
        digest = content_hash(out)
        path = self._write(uc, out, digest)
        datasets = sorted(
            {(v, u) for v, u in zip(history[DATASET_VERSION], history[DATASET_URI], strict=True) if v}
        )
        refs = [c for c in feature_refs(uc) if c.name in set(columns)]
        return TrainingSet(uc.name, path, len(out), digest, refs, datasets)

    def _add_attribute(
        self, uc: UseCase, dataset: ParquetDataset, examples: pd.DataFrame, out: pd.DataFrame
    ) -> None:
        """The example's own fairness attribute (for the evaluator's parity gate), as an extra column."""
        column = attribute_column(uc)
        if (
            column is None
            or uc.evaluation.fairness is None
            or uc.evaluation.fairness.attribute in out.columns
        ):
            return
        ids = pa.array([r for r in examples["record_id"].unique() if r], type=pa.string())
        table = dataset.read(columns=[RECORD_ID, column], filter=pc.field(RECORD_ID).isin(ids))
        lookup = dict(zip(table.column(RECORD_ID).to_pylist(), table.column(column).to_pylist(), strict=True))
        out[uc.evaluation.fairness.attribute] = examples["record_id"].map(lookup).astype("string")

    def _history(
        self, uc: UseCase, dataset: ParquetDataset, pairs: pd.DataFrame, start: datetime, end: datetime
    ) -> pd.DataFrame:
        """Offline rows that can feed these examples: their entities, within ttl before the range."""
        key = uc.entity.field
        lo = pa.scalar(start - uc.features.ttl, type=TS)
        hi = pa.scalar(end, type=TS)
        entities = pa.array(pairs[key].unique().tolist(), type=pa.string())
        table = dataset.read(
            columns=[key, EVENT_TIMESTAMP, DATASET_VERSION, DATASET_URI],
            filter=(pc.field(EVENT_TIMESTAMP) >= lo)
            & (pc.field(EVENT_TIMESTAMP) < hi)
            & pc.field(key).isin(entities),
        )
        return table.to_pandas()

    def _check_rows_exist(self, uc: UseCase, pairs: pd.DataFrame, history: pd.DataFrame) -> None:
        """Every example needs a feature row of its entity in [event_time - ttl, event_time]."""
        key = uc.entity.field
        left = pairs.assign(_at=_us(pairs[ENTITY_TS])).sort_values("_at", kind="stable")
        right = history[[key]].assign(_at=_us(history[EVENT_TIMESTAMP]))
        right = right.assign(_feature_time=right["_at"]).sort_values("_at", kind="stable")
        matched = pd.merge_asof(
            left, right, on="_at", by=key, direction="backward", tolerance=pd.Timedelta(uc.features.ttl)
        )
        lost = matched[matched["_feature_time"].isna()]
        if len(lost):
            missing = [(e, t.to_pydatetime()) for e, t in zip(lost[key], lost[ENTITY_TS], strict=True)]
            raise TrainingSetIncomplete(
                uc.name,
                len(pairs),
                missing,
                f"have no feature row in the ttl ({uc.features.ttl}) up to their event time",
            )

    def _check_feast_kept_all(self, uc: UseCase, pairs: pd.DataFrame, got: pd.DataFrame) -> None:
        key = uc.entity.field
        if len(got) == len(pairs):
            return
        have = set(zip(got[key], _us(got[ENTITY_TS]), strict=True))
        missing = [
            (e, t.to_pydatetime())
            for e, t in zip(pairs[key], pairs[ENTITY_TS], strict=True)
            if (e, t) not in have
        ]
        raise TrainingSetIncomplete(
            uc.name,
            len(pairs),
            missing or [("?", datetime.min)],
            f"were dropped by Feast's point-in-time join (asked {len(pairs)}, got {len(got)})",
        )

    def _write(self, uc: UseCase, df: pd.DataFrame, digest: str) -> Path:
        directory = self._layout.training_dir(uc)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{digest[:24]}.parquet"
        if not path.exists():
            staged = directory / f".{path.name}.{os.getpid()}.tmp"
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), staged)
            os.replace(staged, path)
        return path
