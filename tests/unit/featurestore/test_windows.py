"""Windowed aggregates: exact against a brute-force definition, replays, late records, state."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest

from libs.features import Applied, Duplicate, EntityState, FeatureComputer
from libs.features.windows import RECENT_IDS
from libs.usecase import load_default

SEGMENTS = load_default()["image_segments"]  # count/mean/min/last over 1h
LOAN = load_default()["loan_approval"]  # count/mean/max over 7d
US = 1_000_000


def brute(uc, history: list[tuple[int, dict]], at: int) -> dict[str, float | None]:  # type: ignore[no-untyped-def]
    """The definition, written out: records with event time in (at - window, at]."""
    out: dict[str, float | None] = {}
    for a in uc.features.aggregates:
        w = int(a.window.total_seconds() * US)
        inside = [f for t, f in history if at - w < t <= at]
        vals = [f[a.source] for f in inside] if a.source else []
        vals = [v for v in vals if v is not None]
        if a.aggregate == "count":
            out[a.name] = float(len(inside))
        elif not vals:
            out[a.name] = None
        else:
            out[a.name] = {
                "sum": sum(vals),
                "mean": sum(vals) / len(vals),
                "min": min(vals),
                "max": max(vals),
                "last": vals[-1],
            }[a.aggregate]
    return out


@pytest.mark.parametrize("uc", [SEGMENTS, LOAN], ids=lambda u: u.name)
def test_aggregates_match_the_definition_on_a_random_stream(uc) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    computer = FeatureComputer(uc)
    source = computer.sources[0]
    longest = max(a.window for a in uc.features.aggregates)
    state, history, t = EntityState(), [], 0
    for i in range(400):
        t += int(rng.expovariate(1 / (longest.total_seconds() / 20)) * US)
        fields = {f: 1.0 for f, s in uc.fields.items() if s.type in ("float", "int")}
        fields[source] = None if rng.random() < 0.1 else rng.uniform(0, 300)
        history.append((t, fields))
        out = computer.apply(state, fields, t, f"r{i}")
        assert isinstance(out, Applied) and out.newest
        expected = brute(uc, history, t)
        got = dict(zip(computer.columns, out.values, strict=True))
        for name, want in expected.items():
            assert got[name] == pytest.approx(want, rel=1e-12) if want is not None else got[name] is None, (
                name
            )
    # Pruned to the longest window behind the newest record, nothing more.
    assert min(state.times) > t - int(longest.total_seconds() * US)


def test_window_is_open_at_its_start_and_closed_at_its_end() -> None:
    computer, state = FeatureComputer(SEGMENTS), EntityState()
    hour = int(timedelta(hours=1).total_seconds() * US)
    base = {"intensity_mean": 10.0}
    computer.apply(state, base, 0, "a")
    out = computer.apply(state, {"intensity_mean": 20.0}, hour, "b")  # "a" is exactly one window back
    got = dict(zip(computer.columns, out.values, strict=True))  # type: ignore[union-attr]
    assert got["camera_regions_1h"] == 1.0 and got["camera_intensity_mean_1h"] == 20.0
    out = computer.apply(state, {"intensity_mean": 40.0}, hour, "c")  # same instant: both in
    got = dict(zip(computer.columns, out.values, strict=True))  # type: ignore[union-attr]
    assert got["camera_regions_1h"] == 2.0 and got["camera_intensity_mean_1h"] == 30.0


def test_a_replayed_record_is_a_duplicate_even_after_its_entry_is_pruned() -> None:
    computer, state = FeatureComputer(SEGMENTS), EntityState()
    day = 24 * 3600 * US
    computer.apply(state, {"intensity_mean": 1.0}, 0, "old")
    computer.apply(state, {"intensity_mean": 2.0}, day, "new")
    assert "old" not in state.ids  # pruned: outside every window
    assert isinstance(computer.apply(state, {"intensity_mean": 1.0}, 0, "old"), Duplicate)
    assert isinstance(computer.apply(state, {"intensity_mean": 2.0}, day, "new"), Duplicate)
    assert len(state.times) == 1


def test_recent_ids_are_bounded() -> None:
    computer, state = FeatureComputer(SEGMENTS), EntityState()
    for i in range(RECENT_IDS + 50):
        computer.apply(state, {"intensity_mean": 1.0}, i * 3600 * US, f"r{i}")
    assert len(state.recent) == RECENT_IDS and state.recent[-1] == f"r{RECENT_IDS + 49}"


def test_a_late_record_sees_only_its_past_and_is_not_newest() -> None:
    computer, state = FeatureComputer(SEGMENTS), EntityState()
    computer.apply(state, {"intensity_mean": 10.0}, 100 * US, "a")
    computer.apply(state, {"intensity_mean": 30.0}, 300 * US, "c")
    late = computer.apply(state, {"intensity_mean": 20.0}, 200 * US, "b")
    assert isinstance(late, Applied) and not late.newest
    got = dict(zip(computer.columns, late.values, strict=True))
    assert got["camera_regions_1h"] == 2.0 and got["camera_intensity_last"] == 20.0
    after = computer.apply(state, {"intensity_mean": 40.0}, 400 * US, "d")
    got = dict(zip(computer.columns, after.values, strict=True))  # type: ignore[union-attr]
    assert got["camera_regions_1h"] == 4.0 and got["camera_intensity_min_1h"] == 10.0


def test_state_survives_a_json_round_trip() -> None:
    computer, state = FeatureComputer(LOAN), EntityState()
    for i in range(5):
        computer.apply(state, {"loan": float(i), "salary": 1.0}, i * US, f"r{i}")
    copy = EntityState.from_json(json.loads(json.dumps(state.to_json())))
    assert copy == state
    assert isinstance(computer.apply(copy, {"loan": 0.0, "salary": 1.0}, 0, "r0"), Duplicate)
    assert EntityState.from_json(None) == EntityState()


def test_a_bad_value_leaves_the_state_untouched() -> None:
    computer, state = FeatureComputer(LOAN), EntityState()
    with pytest.raises(ValueError, match="loan"):
        computer.apply(state, {"loan": "x", "salary": 1.0}, 0, "r0")
    assert state == EntityState()
