"""Small builders for the monitor's unit tests."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from libs.usecase import UseCase
from libs.usecase.model import DriftSpec
from services.monitor.domain import Outcome, Prediction, VersionKey
from tests.unit.monitor.loanstream import USE_CASE, loan_usecase

T0 = datetime(2026, 1, 1, tzinfo=UTC)
V1 = VersionKey(USE_CASE, USE_CASE, 1)
V2 = VersionKey(USE_CASE, USE_CASE, 2)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def spec(**drift: object) -> UseCase:
    """The loan use case with its drift policy changed."""
    uc = loan_usecase()
    return uc.model_copy(update={"drift": DriftSpec(**{**uc.drift.model_dump(), **drift})})


def prediction(
    i: int,
    *,
    model: VersionKey = V1,
    seconds: float | None = None,
    score: float = 0.9,
    features: Mapping[str, float | None] | None = None,
    alias: str = "champion",
) -> Prediction:
    return Prediction(
        f"p{i}",
        model,
        at(i if seconds is None else seconds),
        features or {},
        score,
        1 if score >= 0.5 else 0,
        alias,
    )


def outcome(i: int, value: float, *, seconds: float) -> Outcome:
    return Outcome(f"p{i}", USE_CASE, value, at(seconds), f"f{i}")
