"""Where ``aif`` finds the factory: named contexts in a config file, as kubectl's.

The file is ``$AIF_CONFIG`` or ``$XDG_CONFIG_HOME/aif/config.yaml`` (default
``~/.config/aif/config.yaml``)::

    current-context: local
    contexts:
      local:
        registry: 127.0.0.1:50055
        kafka: 127.0.0.1:9092
        token-file: ~/.config/aif/token
      prod:
        kafka: kafka.example.com:9094
        kafka-security-protocol: SASL_SSL     # TLS + SCRAM, as the services connect
        kafka-username: ops-alice
        kafka-password-file: ~/.config/aif/kafka-password
        kafka-ca: ~/.config/aif/kafka-ca.pem

A context holds only what differs from the defaults below. Credentials stay in files:
a context names a token file, never a token. Flags (``--registry``, ``--token-file``,
...) win over the context, the context over the defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aif.cli.output import CliError

# Each service's default address (the ports of `aif up` and the services' settings).
SERVICES = {
    "ingestion": "127.0.0.1:50051",
    "featurestore": "127.0.0.1:50052",
    "trainer": "127.0.0.1:50053",
    "evaluator": "127.0.0.1:50054",
    "registry": "127.0.0.1:50055",
    "gateway": "127.0.0.1:50056",
    "monitor": "127.0.0.1:50057",
}
DEFAULTS = {
    **SERVICES,
    # The gateway's Open Inference Protocol server (models loaded, for aif status).
    "gateway-oip": "127.0.0.1:50066",
    "kafka": "127.0.0.1:9092",
    "dead-letter-topic": "aif.deadletter",
    # Consumer groups aif status reports the lag of: those starting with this prefix.
    "group-prefix": "",
}
# Keys a context may set besides the addresses: credentials as files, never inline.
FILES = ("token-file", "tls-ca", "tls-cert", "tls-key", "kafka-password-file", "kafka-ca")
# Kafka's secure profile (SASL_SSL with SCRAM): the protocol and the principal's name.
KAFKA_AUTH = ("kafka-security-protocol", "kafka-sasl-mechanism", "kafka-username")
KEYS = (*DEFAULTS, *FILES, *KAFKA_AUTH)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    current_context: str = Field(default="", alias="current-context")
    contexts: dict[str, dict[str, str]] = Field(default_factory=dict)


def config_path() -> Path:
    given = os.environ.get("AIF_CONFIG")
    if given:
        return Path(given).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "aif" / "config.yaml"


def load(path: Path | None = None) -> Config:
    """The config file, or an empty one when there is none."""
    path = path or config_path()
    if not path.is_file():
        return Config()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        config = Config.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()[:3]
        raise CliError(f"config {path} is not valid ({' '.join(first)}): fix it or set AIF_CONFIG") from None
    for name, context in config.contexts.items():
        check_keys(name, context, path)
    return config


def check_keys(name: str, context: dict[str, str], path: Path | str = "") -> None:
    unknown = sorted(set(context) - set(KEYS))
    if unknown:
        raise CliError(
            f"context {name!r}{f' in {path}' if path else ''} has unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(KEYS)}"
        )


def save(config: Config, path: Path | None = None) -> Path:
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config.model_dump(by_alias=True), sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def resolve(config: Config, name: str | None) -> tuple[str, dict[str, str]]:
    """The named context (or the current one) merged over the defaults."""
    chosen = name or config.current_context
    if not chosen:
        return "", dict(DEFAULTS)
    if chosen not in config.contexts:
        known = ", ".join(sorted(config.contexts)) or "none"
        raise CliError(
            f"no context {chosen!r} (known: {known}): aif context set {chosen} --registry HOST:PORT"
        )
    return chosen, {**DEFAULTS, **config.contexts[chosen]}
