"""Shared settings fields are declared once (libs.settings mixins) with per-service defaults."""

from __future__ import annotations

from typing import ClassVar

import pytest

from libs.errors import ConfigError
from libs.settings import (
    ConsumerSettings,
    DatabaseSettings,
    FeatureStoreClientSettings,
    RegistryClientSettings,
    UseCaseSourceSettings,
    load_settings,
)


class _Worker(
    ConsumerSettings,
    DatabaseSettings,
    RegistryClientSettings,
    FeatureStoreClientSettings,
    UseCaseSourceSettings,
):
    service: ClassVar[str] = "worker"


def test_defaults_follow_the_service_name() -> None:
    s = load_settings(_Worker, {})
    assert s.consumer_group == "worker" and s.consume is True
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("/build/worker/worker.db")
    assert s.dead_letter_topic == "aif.deadletter"
    assert (s.registry_target, s.featurestore_target) == ("127.0.0.1:50055", "127.0.0.1:50052")
    assert s.usecases_topic == "aif.usecases" and s.service_token.get_secret_value() == ""


def test_scoped_and_shared_variables_override_them() -> None:
    s = load_settings(
        _Worker,
        {
            "AIF_WORKER_CONSUMER_GROUP": "g1",
            "AIF_DATABASE_URL": "sqlite:///x.db",
            "AIF_WORKER_SERVICE_TOKEN": "t",
            "AIF_REGISTRY_TARGET": "r:1",
        },
    )
    assert (s.consumer_group, s.database_url, s.registry_target) == ("g1", "sqlite:///x.db", "r:1")
    assert s.service_token.get_secret_value() == "t"


def test_a_mixin_field_is_known_to_the_typo_check() -> None:
    with pytest.raises(ConfigError, match="AIF_WORKER_DATABASE_URI"):
        load_settings(_Worker, {"AIF_WORKER_DATABASE_URI": "sqlite:///x.db"})
