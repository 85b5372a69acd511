from typing import ClassVar

import pytest

from libs.errors import ConfigError
from libs.settings import ServiceSettings, load_settings


class DemoSettings(ServiceSettings):
    service: ClassVar[str] = "demo"
    model_url: str
    batch: int = 8


def test_reads_scoped_then_shared_then_default() -> None:
    s = load_settings(
        DemoSettings,
        {
            "AIF_DEMO_MODEL_URL": "u",
            "AIF_KAFKA_BOOTSTRAP": "k:1",
            "AIF_DEMO_KAFKA_BOOTSTRAP": "k:2",
            "AIF_BATCH": "3",
        },
    )
    assert (s.model_url, s.kafka_bootstrap, s.batch, s.log_level) == ("u", "k:2", 3, "INFO")


def test_missing_required_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="AIF_DEMO_MODEL_URL: Field required"):
        load_settings(DemoSettings, {})


def test_unknown_scoped_variable_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown setting.*AIF_DEMO_MODELURL"):
        load_settings(DemoSettings, {"AIF_DEMO_MODEL_URL": "u", "AIF_DEMO_MODELURL": "x"})


def test_bad_type_names_variable_and_value() -> None:
    with pytest.raises(ConfigError, match=r"AIF_DEMO_BATCH: .*integer.*\(got 'many'\)"):
        load_settings(DemoSettings, {"AIF_DEMO_MODEL_URL": "u", "AIF_DEMO_BATCH": "many"})


class RenamedSettings(ServiceSettings):
    service: ClassVar[str] = "demo"
    renamed: ClassVar[dict[str, str]] = {"model_url": "model_target"}
    model_target: str


def test_a_renamed_setting_is_read_under_its_old_name_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert load_settings(RenamedSettings, {"AIF_DEMO_MODEL_TARGET": "new"}).model_target == "new"
    with caplog.at_level("WARNING", logger="libs.settings"):
        assert load_settings(RenamedSettings, {"AIF_DEMO_MODEL_URL": "old"}).model_target == "old"
    assert "AIF_DEMO_MODEL_URL is deprecated: it was renamed AIF_DEMO_MODEL_TARGET" in caplog.text
    with pytest.raises(ConfigError, match="AIF_DEMO_MODEL_URL was renamed AIF_DEMO_MODEL_TARGET: set"):
        load_settings(RenamedSettings, {"AIF_DEMO_MODEL_URL": "old", "AIF_DEMO_MODEL_TARGET": "new"})


def test_the_gateway_names_its_targets_as_the_other_services_do() -> None:
    from services.gateway.settings import GatewaySettings

    old = load_settings(
        GatewaySettings, {"AIF_GATEWAY_REGISTRY_URL": "r:1", "AIF_GATEWAY_FEATURE_STORE_URL": "f:2"}
    )
    new = load_settings(
        GatewaySettings, {"AIF_GATEWAY_REGISTRY_TARGET": "r:1", "AIF_GATEWAY_FEATURESTORE_TARGET": "f:2"}
    )
    assert (
        (old.registry_target, old.featurestore_target)
        == (new.registry_target, new.featurestore_target)
        == ("r:1", "f:2")
    )


def test_out_of_range_port_is_refused() -> None:
    with pytest.raises(ConfigError, match="AIF_GRPC_PORT"):
        load_settings(DemoSettings, {"AIF_DEMO_MODEL_URL": "u", "AIF_GRPC_PORT": "70000"})


@pytest.mark.parametrize(
    "name", ["ingestion", "featurestore", "trainer", "evaluator", "registry", "gateway", "monitor"]
)
def test_every_service_settings_load_with_defaults(name: str) -> None:
    import importlib

    module = importlib.import_module(f"services.{name}.settings")
    # The service's own class, not a shared mixin the module imports.
    cls = next(
        v
        for k, v in vars(module).items()
        if k.endswith("Settings") and getattr(v, "__module__", "") == module.__name__
    )
    settings = load_settings(cls, {})
    assert settings.service == name
