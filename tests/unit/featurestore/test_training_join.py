"""Labels join the feature row of their own record; what cannot be joined is quarantined."""

from __future__ import annotations

import pandas as pd

from services.featurestore.store.layout import RECORD_ID
from services.featurestore.training import join_labels

T0 = pd.Timestamp("2026-01-01T00:00:00Z")
S = pd.Timedelta(seconds=1)


def labels(*rows: tuple[str, str, pd.Timestamp, int]) -> pd.DataFrame:
    """(entity, record id or "", event time, label) → the labels dataset's columns."""
    return pd.DataFrame(
        {
            "key": [rid or f"{e}@{t.value}" for e, rid, t, _ in rows],
            "entity_id": [e for e, _, _, _ in rows],
            "event_time": [t for _, _, t, _ in rows],
            "label": [y for _, _, _, y in rows],
            "label_time": [t + S for _, _, t, _ in rows],
            "record_id": [rid for _, rid, _, _ in rows],
        }
    )


def features(*rows: tuple[str, str, pd.Timestamp, float]) -> pd.DataFrame:
    """(entity, record id, event time, x) → offline rows as the builder reads them."""
    return pd.DataFrame(
        {
            "_row_entity": [e for e, _, _, _ in rows],
            "_row_time": [t for _, _, t, _ in rows],
            RECORD_ID: [rid for _, rid, _, _ in rows],
            "x": [x for _, _, _, x in rows],
        }
    )


def test_a_label_gets_its_own_records_features_never_an_older_row() -> None:
    rows = features(("a", "a-1", T0, 1.0), ("a", "a-2", T0 + 10 * S, 2.0))
    got, q = join_labels(labels(("a", "a-2", T0 + 10 * S, 1), ("a", "a-rejected", T0 + 20 * S, 0)), rows)
    assert got["x"].tolist() == [2.0]
    assert q == {"no_feature_row": 1, "entity_mismatch": 0, "ambiguous_event_time": 0}


def test_orphans_are_counted_and_the_rest_is_kept() -> None:
    rows = features(("a", "a-1", T0, 1.0), ("b", "b-1", T0 + S, 3.0))
    got, q = join_labels(
        labels(
            ("a", "a-1", T0, 1),
            ("b", "b-1", T0 + S, 0),
            ("ghost", "ghost-1", T0, 1),  # an entity never ingested
            ("b", "a-1", T0, 1),  # names a's record: another entity's features
        ),
        rows,
    )
    assert got["entity_id"].tolist() == ["a", "b"] and got["x"].tolist() == [1.0, 3.0]
    assert q == {"no_feature_row": 1, "entity_mismatch": 1, "ambiguous_event_time": 0}


def test_without_a_record_id_only_the_exact_event_time_joins() -> None:
    rows = features(("a", "a-1", T0, 1.0), ("c", "c-1", T0, 5.0), ("c", "c-2", T0, 6.0))
    got, q = join_labels(
        labels(
            ("a", "", T0, 1),  # exactly a-1's time
            ("a", "", T0 + S, 0),  # a second later: no row at that time, not the older one
            ("c", "", T0, 1),  # two rows at that time: which record is unknowable
        ),
        rows,
    )
    assert got["x"].tolist() == [1.0]
    assert q == {"no_feature_row": 1, "entity_mismatch": 0, "ambiguous_event_time": 1}
