"""Ingestion takes up and drops use cases while running (the catalogue's changes), no broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from libs.usecase import UnknownUseCase, UseCase, UseCases
from services.ingestion.core import make_core
from services.ingestion.settings import IngestionSettings


def test_a_use_case_applied_while_running_is_taken_up_and_a_retired_one_dropped(
    tmp_path: Path, loan: UseCase
) -> None:
    settings = IngestionSettings(data_dir=tmp_path / "raw", privacy_salt="unit-salt")
    core = make_core(settings, MeterProvider().get_meter("t"), UseCases())
    assert core.ingestors == {}

    ingestor = asyncio.run(core.take_up(loan))

    assert core.ingestors == {"loan_approval": ingestor}
    assert core.dataset.schema("loan_approval").names[:5] == [
        "_record_id",
        "_entity_id",
        "_event_time",
        "_ingested_at",
        "_source",
    ]
    # A new version of the spec swaps the rules; the dataset (same columns) is kept.
    again = asyncio.run(core.take_up(loan.model_copy(update={"version": 2})))
    assert again is not ingestor and core.ingestors["loan_approval"].usecase.version == 2

    core.drop("loan_approval")
    assert core.ingestors == {}
    assert core.dataset.uri("loan_approval").endswith("/loan_approval")  # history stays readable


def test_the_push_api_answers_not_found_for_a_use_case_not_taken_up(tmp_path: Path, loan: UseCase) -> None:
    from services.ingestion.push import PushIngest

    core = make_core(
        IngestionSettings(data_dir=tmp_path, privacy_salt="unit-salt"),
        MeterProvider().get_meter("t"),
        UseCases(),
    )
    push = PushIngest(
        core.ingestors,
        core.dataset,
        core.quality,
        publisher=None,  # type: ignore[arg-type]  # never reached
        records_topic="r",
        dead_letter_topic="d",
    )
    with pytest.raises(UnknownUseCase):
        push.ingestor("loan_approval")
    asyncio.run(core.take_up(loan))
    assert push.ingestor("loan_approval").usecase is loan


def test_ingestion_refuses_to_start_without_a_privacy_key(tmp_path: Path) -> None:
    """No built-in key: a published default would make every hash of personal data reversible."""
    from libs.errors import ConfigError

    with pytest.raises(ConfigError, match="AIF_PRIVACY_SALT"):
        make_core(
            IngestionSettings(data_dir=tmp_path, privacy_salt=""), MeterProvider().get_meter("t"), UseCases()
        )
