"""The shared registry suite on SQLite: a database file per test, no infrastructure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.registry.kit import Kit, open_kit


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def kit(database_url: str, tmp_path: Path) -> Iterator[Kit]:
    with open_kit(database_url, tmp_path) as kit:
        yield kit
