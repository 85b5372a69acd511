"""A service's Kafka transport: TLS unless local development is said explicitly."""

from __future__ import annotations

import ssl
from typing import ClassVar

import pytest

from libs.bus import KafkaSecurity
from libs.bus.security import require_kafka_tls
from libs.errors import ConfigError
from libs.settings import ServiceSettings, load_settings


class _Svc(ServiceSettings):
    service: ClassVar[str] = "svc"


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_a_transport_without_tls_needs_the_local_development_flag(protocol: str) -> None:
    settings = load_settings(_Svc, {"AIF_KAFKA_SECURITY_PROTOCOL": protocol})
    with pytest.raises(ConfigError) as err:
        require_kafka_tls(settings)
    assert "AIF_KAFKA_ALLOW_PLAINTEXT=1" in err.value.message
    assert "\n" not in err.value.message
    require_kafka_tls(
        load_settings(_Svc, {"AIF_KAFKA_SECURITY_PROTOCOL": protocol, "AIF_KAFKA_ALLOW_PLAINTEXT": "1"})
    )
    # Scoped to one service works too, as every setting does.
    require_kafka_tls(load_settings(_Svc, {"AIF_SVC_KAFKA_ALLOW_PLAINTEXT": "true"}))


def test_sasl_ssl_needs_no_flag_and_verifies_the_broker() -> None:
    settings = load_settings(
        _Svc,
        {
            "AIF_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "AIF_KAFKA_USERNAME": "ingestion",
            "AIF_KAFKA_PASSWORD": "secret",
        },
    )
    require_kafka_tls(settings)
    kwargs = KafkaSecurity.from_settings(settings).client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    context = kwargs["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
