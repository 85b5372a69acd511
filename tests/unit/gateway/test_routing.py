"""Routing strategies: champion, canary (share and stickiness by entity hash), shadow."""

from __future__ import annotations

import math

from services.gateway.routing import CHALLENGER, CHAMPION, Route, Routing, bucket


def test_bucket_is_stable_and_uniform() -> None:
    assert bucket("e1", "uc") == bucket("e1", "uc") and bucket("e1", "uc") != bucket("e1", "other")
    values = [bucket(f"e{i}", "uc") for i in range(20_000)]
    assert 0 <= min(values) and max(values) < 1
    assert abs(sum(v < 0.5 for v in values) / len(values) - 0.5) < 0.02


def test_champion_only_and_without_challenger() -> None:
    assert Routing("uc", 3).route("e") == Route(3, CHAMPION)
    assert Routing("uc", 3, 0, "canary", 0.5).route("e") == Route(3, CHAMPION)
    assert Routing("uc", 3, 4, "champion", 0.5).route("e") == Route(3, CHAMPION)
    assert Routing("uc", 3, 4, "champion").versions == {3}


def test_canary_share_and_stickiness() -> None:
    plan = Routing("uc", 1, 2, "canary", 0.2)
    n = 50_000
    routes = [plan.route(f"entity-{i}") for i in range(n)]
    share = sum(r.version == 2 for r in routes) / n
    assert abs(share - 0.2) <= 3 * math.sqrt(0.2 * 0.8 / n)
    assert all(plan.route(f"entity-{i}") == routes[i] for i in range(0, n, 97))
    assert {r.alias for r in routes if r.version == 2} == {CHALLENGER}
    assert plan.versions == {1, 2}


def test_canary_without_entity_splits_at_random() -> None:
    plan = Routing("uc", 1, 2, "canary", 0.5)
    assert {plan.route(None).version for _ in range(200)} == {1, 2}


def test_shadow_answers_with_the_champion_and_names_the_shadow() -> None:
    plan = Routing("uc", 1, 2, "shadow")
    assert plan.route("e") == Route(1, CHAMPION, shadow_version=2)
    assert plan.versions == {1, 2}


def test_prediction_ids_are_unique_32_hex() -> None:
    from services.gateway.ids import prediction_id, reseed

    ids = {prediction_id() for _ in range(10_000)}
    reseed()
    ids |= {prediction_id() for _ in range(10_000)}
    assert len(ids) == 20_000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
