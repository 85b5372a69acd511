"""Wiring rules of the ingestion service that need no broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.errors import ConfigError
from libs.usecase import DEFAULT_DIR
from services.ingestion.core import load_specs


def test_missing_or_empty_use_case_folder_starts_with_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_specs(tmp_path / "absent") == {}
    assert load_specs(tmp_path) == {}
    assert "no use case spec" in caplog.text and "does not exist" in caplog.text
    assert set(load_specs(DEFAULT_DIR)) >= {"loan_approval", "image_segments"}


def test_an_invalid_spec_stops_the_service_naming_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: bad\nversion: 1\nsurprise: true\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_specs(tmp_path)
