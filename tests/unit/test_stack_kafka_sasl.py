"""The stack on a Kafka with TLS (SASL_SSL): no service is given the plaintext permission, and
each reads only its own login through its own settings class."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from aif.stack import SERVICES, Stack
from libs.auth import DevAuth
from libs.bus import KafkaSecurity
from libs.bus.security import require_kafka_tls
from libs.errors import ConfigError
from libs.settings import ServiceSettings, load_settings


def _settings_class(name: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{name}.settings")
    (cls,) = [c for c in vars(module).values() if isinstance(c, type) and getattr(c, "service", "") == name]
    return cls


def _sasl_env() -> dict[str, str]:
    env = {"AIF_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "AIF_KAFKA_SSL_CAFILE": "/ca.pem"}
    for name in SERVICES:
        env[f"AIF_{name.upper()}_KAFKA_USERNAME"] = name
        env[f"AIF_{name.upper()}_KAFKA_PASSWORD"] = f"password-of-{name}"
    return env


@pytest.mark.parametrize("name", list(SERVICES))
def test_on_sasl_ssl_each_service_gets_its_own_login_and_no_plaintext_permission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # What tests/conftest.py sets for the open broker must not reach a service on SASL_SSL.
    monkeypatch.setenv("AIF_KAFKA_ALLOW_PLAINTEXT", "1")
    stack = Stack(tmp_path / "logs", auth=DevAuth(tmp_path / "auth"), env=_sasl_env())
    assert stack.kafka_tls
    env = stack.process_env(name)
    assert "AIF_KAFKA_ALLOW_PLAINTEXT" not in env
    assert not [v for k, v in env.items() if k.endswith("_KAFKA_PASSWORD") and v != f"password-of-{name}"]
    settings = load_settings(_settings_class(name), env)
    assert not settings.kafka_allow_plaintext
    require_kafka_tls(settings)  # passes: TLS
    security = KafkaSecurity.from_settings(settings)
    assert (security.protocol, security.username, security.password) == (
        "SASL_SSL",
        name,
        f"password-of-{name}",
    )


def test_on_the_open_broker_the_stack_still_allows_plaintext(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "logs", auth=DevAuth(tmp_path / "auth"))
    assert not stack.kafka_tls
    settings = load_settings(_settings_class("gateway"), stack.process_env("gateway"))
    assert settings.kafka_allow_plaintext
    require_kafka_tls(settings)


def test_a_service_given_plaintext_without_the_permission_refuses_to_start(tmp_path: Path) -> None:
    env = Stack(tmp_path / "logs", auth=DevAuth(tmp_path / "auth"), env=_sasl_env()).process_env("gateway")
    settings = load_settings(_settings_class("gateway"), {**env, "AIF_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})
    with pytest.raises(ConfigError, match="no TLS"):
        require_kafka_tls(settings)
