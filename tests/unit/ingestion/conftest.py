"""Shared pieces of the ingestion unit tests: the shipped loan spec and a valid record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aif.datagen import LoanStream
from libs.usecase import UseCase, load_default

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def loan() -> UseCase:
    return load_default()["loan_approval"]


@pytest.fixture(scope="session")
def segments() -> UseCase:
    return load_default()["image_segments"]


@pytest.fixture
def record() -> dict[str, Any]:
    """One valid loan application as a producer sends it (after JSON round trip)."""
    example = next(iter(LoanStream(seed=3)))
    return {**example.record, "event_time": example.record["event_time"].isoformat()}
