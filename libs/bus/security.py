"""How a Kafka client authenticates: PLAINTEXT (the open local broker) or SASL/SCRAM.

Each service is its own principal in the secure profile; its username and password
come from settings (``AIF_<SERVICE>_KAFKA_USERNAME`` / ``..._KAFKA_PASSWORD``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from libs.errors import ConfigError

if TYPE_CHECKING:  # libs.settings imports libs.bus for topic names
    from libs.settings import ServiceSettings


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
