"""The batched SQLite online store and the Arrow write path store exactly what Feast's own would."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest

from libs.usecase import load_default
from services.featurestore.domain import FeatureRow
from services.featurestore.store import feast_repo
from services.featurestore.store.layout import Layout
from services.featurestore.store.online_writer import FeastOnline
from services.featurestore.store.rows import feature_table
from services.featurestore.store.sqlite import arrow_rows

USECASES = load_default()
UC = USECASES["loan_approval"]


def _store(root: Path, online: str) -> tuple[object, Layout]:
    layout = Layout(root / "repo", root / "data")
    feast_repo.generate(layout, USECASES, project="t", online_store=online, redis_url="redis://127.0.0.1:1/0")
    if online == "feast-sqlite":  # Feast's own store, for the comparison
        path = layout.repo / "feature_store.yaml"
        path.write_text(path.read_text().replace(feast_repo.SQLITE_STORE, "sqlite"))
    return feast_repo.open_store(layout, apply=True), layout


def _rows(n: int, seed: int) -> pa.Table:
    rng = random.Random(seed)
    width = len(UC.model_inputs())
    rows = [
        FeatureRow(
            UC.name,
            f"a{i}",
            1_700_000_000_000_000 + i * 1_000_003,
            f"r{seed}-{i}",
            [
                None if j % 7 == 0 else float("nan") if j % 11 == 0 else rng.uniform(-1e6, 1e6)
                for j in range(width)
            ],
            True,
        )
        for i in range(n)
    ]
    return feature_table(UC, rows, 1_700_000_123_456_789)


def _dump(layout: Layout) -> list[tuple]:
    with sqlite3.connect(layout.repo / "online.db") as conn:
        return conn.execute(
            "SELECT entity_key, feature_name, value, value_text, event_ts, created_ts "
            "FROM t_loan_approval ORDER BY entity_key, feature_name"
        ).fetchall()


def test_batched_writes_equal_feasts_own(tmp_path: Path) -> None:
    ours, ours_layout = _store(tmp_path / "ours", "sqlite")
    feasts, feasts_layout = _store(tmp_path / "feast", "feast-sqlite")
    writer = FeastOnline(ours)
    for seed in (1, 2):  # an insert, then an overwrite of the same entities
        table = _rows(300, seed)
        writer.write(UC.name, table)
        feasts.write_to_online_store(UC.name, table.to_pandas())
    got, want = _dump(ours_layout), _dump(feasts_layout)
    assert len(got) == 300 * (len(UC.model_inputs()) + 1) and got == want
    features = [f"{UC.name}:loan", f"{UC.name}:salary", f"{UC.name}:_record_id"]
    entities = [{UC.entity.field: f"a{i}"} for i in (0, 7, 299)]
    assert (
        ours.get_online_features(features=features, entity_rows=entities).to_dict()
        == feasts.get_online_features(features=features, entity_rows=entities).to_dict()
    )


def test_arrow_rows_refuses_what_it_does_not_cover(tmp_path: Path) -> None:
    store, _ = _store(tmp_path, "sqlite")
    view = store.get_feature_view(UC.name)
    assert arrow_rows(view, _rows(3, 1).drop_columns(["loan"])) is None  # a missing column: Feast's path


@pytest.mark.parametrize("bad", ["Array(Float64)"])
def test_unknown_types_are_not_guessed(bad: str) -> None:
    from services.featurestore.store.sqlite import _SCALARS

    assert bad not in _SCALARS
