"""How a Kafka client authenticates: SASL_SSL (TLS + SCRAM), or PLAINTEXT (the open local broker).

Each service is its own principal in the secure profile; its username and password
come from settings (``AIF_<SERVICE>_KAFKA_USERNAME`` / ``..._KAFKA_PASSWORD``), the CA that
signed the broker's certificate from ``AIF_KAFKA_SSL_CAFILE`` (the system's CAs when empty).
A service process checks its transport at start (:func:`require_kafka_tls`): PLAINTEXT
only with the explicit local-development flag ``AIF_KAFKA_ALLOW_PLAINTEXT=1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from libs.errors import ConfigError

if TYPE_CHECKING:  # libs.settings imports libs.bus for topic names
    from libs.settings import ServiceSettings


# The transports that send records, and SASL exchanges, in the clear.
CLEARTEXT = frozenset({"PLAINTEXT", "SASL_PLAINTEXT"})


def require_kafka_tls(settings: ServiceSettings) -> None:
    """Refuses a Kafka transport without TLS unless the settings mark local development
    (``kafka_allow_plaintext``); :class:`ConfigError` in one line saying what to set."""
    if settings.kafka_security_protocol in CLEARTEXT and not settings.kafka_allow_plaintext:
        raise ConfigError(
            f"Kafka {settings.kafka_security_protocol} to {settings.kafka_bootstrap} has no TLS: set "
            "AIF_KAFKA_SECURITY_PROTOCOL=SASL_SSL (with AIF_KAFKA_USERNAME, AIF_KAFKA_PASSWORD, "
            "AIF_KAFKA_SSL_CAFILE), or AIF_KAFKA_ALLOW_PLAINTEXT=1 for local development only"
        )


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password: str = field(default="", repr=False)
    ssl_cafile: str = ""

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> KafkaSecurity:
        return cls(
            settings.kafka_security_protocol,
            settings.kafka_sasl_mechanism,
            settings.kafka_username,
            settings.kafka_password.get_secret_value(),
            settings.kafka_ssl_cafile,
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        if self.protocol == "PLAINTEXT":
            return {}
        if not (self.username and self.password):
            raise ConfigError(f"Kafka {self.protocol} needs AIF_KAFKA_USERNAME and AIF_KAFKA_PASSWORD")
        kwargs: dict[str, Any] = {
            "security_protocol": self.protocol,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
        }
        if self.protocol == "SASL_SSL":
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(cafile=self.ssl_cafile or None)
        return kwargs
