"""The stack's mutual-TLS option: what each service is given, read by its own settings class."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from aif.stack import CALLERS, SERVICES, Stack, tls_from_env
from libs.auth import DevAuth, server_security
from libs.auth.tls import client_tls
from libs.errors import ConfigError
from libs.settings import ClientSettings, ServiceSettings, load_settings


def _settings_class(name: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{name}.settings")
    (cls,) = [c for c in vars(module).values() if isinstance(c, type) and getattr(c, "service", "") == name]
    return cls


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return Stack(tmp_path / "logs", auth=DevAuth(tmp_path / "auth"), tls=True, pki_dir=tmp_path / "pki")


@pytest.mark.parametrize("name", list(SERVICES))
def test_every_service_gets_mutual_tls_at_both_ends(stack: Stack, name: str) -> None:
    settings = load_settings(_settings_class(name), stack.environment(name))
    tls = server_security(settings).tls
    assert tls is not None and tls.client_ca == (stack.pki.ca).read_bytes(), "client certificates required"
    if isinstance(settings, ClientSettings):
        calls = client_tls(settings)
        assert calls is not None and calls.cert == tls.cert, "it presents its own certificate as a client"
    else:
        assert name not in CALLERS


def test_plaintext_stack_gives_no_tls_and_its_callers_none(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "logs", auth=DevAuth(tmp_path / "auth"), tls=False)
    env = stack.environment("gateway")
    assert not any("TLS" in key for key in env)
    assert stack.client_tls() is None
    settings = load_settings(_settings_class("gateway"), env)
    assert server_security(settings).tls is None and client_tls(settings) is None  # type: ignore[arg-type]


def test_callers_of_a_tls_stack_hold_a_certificate_of_its_ca(stack: Stack) -> None:
    tls = stack.client_tls("e2e-operator")
    assert tls is not None and tls.ca == stack.pki.ca.read_bytes() and tls.cert and tls.key


def test_the_switch_is_read_from_aif_stack_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, on in (("mtls", True), ("MTLS", True), ("off", False), ("", False)):
        monkeypatch.setenv("AIF_STACK_TLS", value)
        assert tls_from_env() is on
    monkeypatch.setenv("AIF_STACK_TLS", "tls")
    with pytest.raises(ConfigError, match="AIF_STACK_TLS"):
        tls_from_env()
