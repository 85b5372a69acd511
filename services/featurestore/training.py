"""Point-in-time-correct training sets: each label joined to the record it is about.

Examples are the labelled records of a use case with event time in ``[start, end)``
whose label was known by ``end`` (``label_time <= end``: a label observed after the
cutoff is not used — labels are joined at label time). Each example gets the feature
row computed *from its own record*: the offline row whose record id is the label's
``record_id`` (a label without one: the row of its entity at exactly its event time).
That row holds the features as of the record's event time (the stream computed them
then), so no value from after the example can leak in, and a label can never borrow
the features of another record of the same entity.

A label that cannot be joined is *quarantined*, never guessed and never fatal: it is
left out, counted by reason (:data:`QUARANTINE_REASONS`) in :attr:`TrainingSet.quarantined`
and in the ``aif.featurestore.training.quarantined`` metric, and the set is built from the
rest. Typical causes: feedback for a record that ingestion rejected, or for an entity
never ingested (``no_feature_row``), a label naming another entity than its record's
(``entity_mismatch``), two rows of the entity at the label's exact event time and no
record id to choose (``ambiguous_event_time``).

The set is written as parquet — ``entity_id, event_time, label_time, label``, the
model input columns as float64, then (when the spec has a fairness gate) the example's
own fairness attribute as text — under a name derived from its content hash, in row
groups of :data:`ROW_GROUP_ROWS` so that it can be streamed a batch at a time. That file
is the feature store's own: other services get the rows over gRPC (``StreamTrainingSet``,
see :mod:`libs.lifecycle.wire`), never its path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from opentelemetry import metrics

from libs.errors import FailedPrecondition
from libs.features import FeatureColumn, feature_refs
from libs.lifecycle.wire import content_hash
from libs.usecase import UseCase
from services.featurestore.store.layout import (
    DATASET_URI,
    DATASET_VERSION,
    EVENT_TIMESTAMP,
    RECORD_ID,
    Layout,
)
from services.featurestore.store.offline import ParquetDataset
from services.featurestore.store.rows import TS, attribute_column

LABEL = "label"
META_COLUMNS = ["entity_id", "event_time", "label_time", LABEL]

# Why a label was left out of a training set.
NO_FEATURE_ROW = "no_feature_row"  # no offline row of its record (rejected, never ingested, not yet landed)
ENTITY_MISMATCH = "entity_mismatch"  # its record belongs to another entity than the label names
AMBIGUOUS_EVENT_TIME = "ambiguous_event_time"  # no record id, several rows of the entity at its time
QUARANTINE_REASONS = (NO_FEATURE_ROW, ENTITY_MISMATCH, AMBIGUOUS_EVENT_TIME)
# Rows per parquet row group of a written set: what a stream reads at once stays small.
ROW_GROUP_ROWS = 65_536

_quarantined = metrics.get_meter("aifactory.featurestore").create_counter(
    "aif.featurestore.training.quarantined",
    unit="{label}",
    description="Labels left out of a training set because they join no feature row of their own, by reason",
)


@dataclass(frozen=True)
class TrainingSet:
    use_case: str
    # The parquet file on this service's disk (streamed from here; never handed out).
    path: Path
    row_count: int
    content_hash: str
    features: list[FeatureColumn]
    # Raw dataset versions (and their URIs) of the records behind the features.
    datasets: list[tuple[str, str]]
    label: str = LABEL
    # Labels in the range left out, by reason (QUARANTINE_REASONS); absent reasons are 0.
    quarantined: dict[str, int] = field(default_factory=dict)

    @property
    def ref_uri(self) -> str:
        """The set's name for lineage (an identifier, not a location)."""
        return f"featurestore://{self.use_case}/training-sets/{self.content_hash}"


def _us(column: pd.Series) -> pd.Series:
    """Timestamps as UTC microseconds, whatever unit pyarrow or Feast handed back."""
    return pd.to_datetime(column, utc=True).astype("datetime64[us, UTC]")


# Names of the feature row's own entity and time once joined (kept apart from the label's).
_ROW_ENTITY = "_row_entity"
_ROW_TIME = "_row_time"


def _describe(quarantined: dict[str, int]) -> str:
    return ", ".join(f"{n} {r}" for r, n in quarantined.items() if n) or "none"


def join_labels(examples: pd.DataFrame, rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Each label with the feature row of its own record; the rest counted by reason.

    ``examples``: labels (``entity_id, event_time, label_time, label, record_id``, ...);
    ``rows``: offline feature rows with ``_row_entity``, ``_row_time``, ``_record_id`` and
    the feature columns. A label with a record id joins that record's row only (never
    another row of its entity: that would be another record's features); one without
    joins the single row of its entity at exactly its event time. Returns the joined
    labels (in the labels' order) and ``{reason: count}`` over :data:`QUARANTINE_REASONS`.
    """
    quarantined = dict.fromkeys(QUARANTINE_REASONS, 0)
    has_id = examples["record_id"].fillna("").astype(str) != ""
    by_id = examples[has_id].merge(
        rows.drop_duplicates(RECORD_ID), left_on="record_id", right_on=RECORD_ID, how="left", indicator=True
    )
    found = by_id["_merge"] == "both"
    quarantined[NO_FEATURE_ROW] += int((~found).sum())
    same_entity = by_id["entity_id"] == by_id[_ROW_ENTITY]
    quarantined[ENTITY_MISMATCH] += int((found & ~same_entity).sum())
    joined_by_id = by_id[found & same_entity]

    no_id = examples[~has_id]
    at_time = no_id.merge(
        rows,
        left_on=["entity_id", "event_time"],
        right_on=[_ROW_ENTITY, _ROW_TIME],
        how="left",
        indicator=True,
    )
    matches = (at_time["_merge"] == "both").groupby(at_time["key"], sort=False).sum()
    quarantined[NO_FEATURE_ROW] += int((matches == 0).sum())
    quarantined[AMBIGUOUS_EVENT_TIME] += int((matches > 1).sum())
    single = matches[matches == 1].index
    joined_by_time = at_time[at_time["key"].isin(single) & (at_time["_merge"] == "both")]

    parts = [p for p in (joined_by_id, joined_by_time) if not p.empty]
    joined = (pd.concat(parts, ignore_index=True) if parts else joined_by_id).drop(columns="_merge")
    joined = joined.sort_values(["event_time", "entity_id", "key"], kind="stable").reset_index(drop=True)
    return joined, quarantined


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
        """Join, quarantine and write the training set (blocking: call from a thread)."""
        columns = list(columns or uc.model_inputs())
        examples = self.examples(uc, start, end)
        if examples.empty:
            raise FailedPrecondition(
                f"training set for {uc.name}: no labelled examples with event time in "
                f"[{start.isoformat()}, {end.isoformat()}) and label known by the end"
            )
        dataset = self._features[uc.name]
        attr = attribute_column(uc) if uc.evaluation.fairness is not None else None
        with dataset.snapshot():
            rows = self._rows(uc, dataset, examples, start, end, [*columns, *([attr] if attr else [])])
        joined, quarantined = join_labels(examples, rows)
        if joined.empty:
            raise FailedPrecondition(
                f"training set for {uc.name}: none of the {len(examples)} labels in "
                f"[{start.isoformat()}, {end.isoformat()}) joins a feature row of its own "
                f"(quarantined: {_describe(quarantined)})"
            )
        for reason, count in quarantined.items():
            if count:
                _quarantined.add(count, {"use_case": uc.name, "reason": reason})
        out = joined[META_COLUMNS + columns].copy()
        for c in columns:
            out[c] = out[c].astype("float64")
        if attr is not None and uc.evaluation.fairness is not None:
            if uc.evaluation.fairness.attribute not in out.columns:
                out[uc.evaluation.fairness.attribute] = joined[attr].astype("string")
        digest = content_hash(out)
        path = self._write(uc, out, digest)
        datasets = sorted(
            {
                (v, u)
                for v, u in zip(joined[DATASET_VERSION], joined[DATASET_URI], strict=True)
                if isinstance(v, str) and v
            }
        )
        refs = [c for c in feature_refs(uc) if c.name in set(columns)]
        return TrainingSet(uc.name, path, len(out), digest, refs, datasets, quarantined=quarantined)

    def _rows(
        self,
        uc: UseCase,
        dataset: ParquetDataset,
        examples: pd.DataFrame,
        start: datetime,
        end: datetime,
        columns: list[str],
    ) -> pd.DataFrame:
        """The offline rows the labels can join: their records by id, and their entities'
        rows in the range (for labels without a record id)."""
        key = uc.entity.field
        ids = pa.array([r for r in examples["record_id"].dropna().unique() if r], type=pa.string())
        entities = pa.array(examples["entity_id"].unique().tolist(), type=pa.string())
        in_range = (
            (pc.field(EVENT_TIMESTAMP) >= pa.scalar(start, type=TS))
            & (pc.field(EVENT_TIMESTAMP) < pa.scalar(end, type=TS))
            & pc.field(key).isin(entities)
        )
        table = dataset.read(
            columns=[key, EVENT_TIMESTAMP, RECORD_ID, DATASET_VERSION, DATASET_URI, *columns],
            filter=pc.field(RECORD_ID).isin(ids) | in_range,
        )
        rows = table.to_pandas().rename(columns={key: _ROW_ENTITY, EVENT_TIMESTAMP: _ROW_TIME})
        rows[_ROW_TIME] = _us(rows[_ROW_TIME])
        return rows

    def _write(self, uc: UseCase, df: pd.DataFrame, digest: str) -> Path:
        directory = self._layout.training_dir(uc)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{digest[:24]}.parquet"
        if not path.exists():
            staged = directory / f".{path.name}.{os.getpid()}.tmp"
            pq.write_table(
                pa.Table.from_pandas(df, preserve_index=False), staged, row_group_size=ROW_GROUP_ROWS
            )
            os.replace(staged, path)
        return path
