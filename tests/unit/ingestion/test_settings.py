"""Ingestion settings: defaults, environment, and the raw topic pattern."""

from __future__ import annotations

import pytest

from libs.errors import ConfigError
from libs.settings import load_settings
from services.ingestion.settings import IngestionSettings


def test_defaults_and_environment() -> None:
    s = load_settings(
        IngestionSettings,
        {"AIF_INGESTION_INSTANCE_ID": "pod-3", "AIF_INGESTION_RAW_TOPIC_PATTERN": "test.{use_case}.in"},
    )
    # Use cases come from the catalogue's topic (UseCaseSourceSettings); the group is the service's name.
    assert s.usecases_topic == "aif.usecases" and s.consumer_group == "ingestion"
    assert s.transactional_id == "ingestion-pod-3" and s.raw_topic("loan") == "test.loan.in"
    assert s.records_topic == "aif.records" and s.dead_letter_topic == "aif.deadletter"
    assert IngestionSettings().raw_topic("loan_approval") == "aif.loan_approval.raw"
    # no instance id: host name and gRPC port, stable across restarts, distinct per instance on a host
    assert IngestionSettings(grpc_port=50051).instance.endswith("-50051")
    assert (
        IngestionSettings(grpc_port=50051).transactional_id
        != IngestionSettings(grpc_port=51051).transactional_id
    )


@pytest.mark.parametrize("pattern", ["aif.raw", "aif.{use_case}.{other}"])
def test_raw_topic_pattern_needs_its_placeholder(pattern: str) -> None:
    with pytest.raises(ConfigError, match="AIF_INGESTION_RAW_TOPIC_PATTERN"):
        load_settings(IngestionSettings, {"AIF_INGESTION_RAW_TOPIC_PATTERN": pattern})
