"""Service settings from environment variables, validated at start.

Each service declares a pydantic model of its settings (subclass of
:class:`ServiceSettings`). A field ``grpc_port`` of the gateway is read from
``AIF_GATEWAY_GRPC_PORT`` first, then from the shared ``AIF_GRPC_PORT``, then
its default. Any ``AIF_GATEWAY_*`` variable that names no field is an error, so a
typo stops the service at start instead of being silently ignored. A setting that was
renamed (``renamed``: old field name → new) is still read under its old name, with a
warning; both names set at once is an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from libs.bus import compression, topics
from libs.errors import ConfigError
from libs.settings.token_file import TokenFile, read_token

log = logging.getLogger(__name__)

PREFIX = "AIF_"

REPO_ROOT = Path(__file__).resolve().parents[2]
# Development keys, revocation list and certificates (`aif token keygen` / `aif token certs`).
DEFAULT_AUTH_DIR = REPO_ROOT / "build" / "auth"
DEFAULT_ISSUER = "aifactory-dev"
DEFAULT_AUDIENCE = "aifactory"

S = TypeVar("S", bound="ServiceSettings")


class ServiceSettings(BaseModel):
    """Settings every service has. Subclasses add their own fields and set ``service``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: ClassVar[str] = ""
    # Old field name → its new name: the old variable still works, with a warning.
    renamed: ClassVar[Mapping[str, str]] = {}

    # Subclasses override the port defaults so the seven services can share a host.
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50050, ge=0, le=65535)  # 0: any free port
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9100, ge=0, le=65535)  # 0: no Prometheus endpoint
    kafka_bootstrap: str = "127.0.0.1:9092"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one JSON object a line with the current trace_id and span_id (libs.telemetry.logs).
    log_format: Literal["text", "json"] = "text"
    # Spans go nowhere by default; "console" prints them, "jsonl:<path>" appends
    # them to a file (used by multi-process tests), "otlp" sends them to OTEL_EXPORTER_OTLP_*
    # (as OTEL_TRACES_EXPORTER=otlp does: libs.telemetry.otlp).
    trace_exporter: str = "none"
    drain_seconds: float = 5.0

    # Every RPC needs a signed token (jwt) unless this says "off"; health stays open.
    # Secure by default: a service without a public key in auth_dir stops at start.
    auth_mode: Literal["jwt", "off"] = "jwt"
    # Holds jwt_public.pem and revoked.txt (one revoked token id a line).
    auth_dir: Path = DEFAULT_AUTH_DIR
    auth_issuer: str = DEFAULT_ISSUER
    auth_audience: str = DEFAULT_AUDIENCE
    auth_leeway_seconds: float = Field(default=10.0, ge=0, le=300)
    # Token verification keys (JWKS, picked by the token's kid): a file path or an IdP's
    # http(s) jwks_uri, re-read on change / unknown kid. Empty: <auth_dir>/jwks.json, or
    # <auth_dir>/jwt_public.pem alone when there is no JWKS (libs.auth.verification_keys).
    auth_jwks: str = ""
    # A token living longer than this (exp - iat) is refused even when signed.
    auth_max_token_ttl_s: float = Field(default=24 * 3600.0, gt=0, le=30 * 24 * 3600)
    # gRPC over TLS when set (PEM paths); with tls_client_ca, client certificates are required.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Kafka client security (the secure profile: SASL_SSL + SCRAM-SHA-512, CA in kafka_ssl_cafile).
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # A transport without TLS (PLAINTEXT, SASL_PLAINTEXT) is for local development only: a
    # service refuses to start on one unless this says so (AIF_KAFKA_ALLOW_PLAINTEXT=1, set by
    # the local stack, the demo and the tests; libs.bus.security.require_kafka_tls).
    kafka_allow_plaintext: bool = False
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = ""
    # Key of the salted hashes that stand in for personal data in logs and events.
    privacy_salt: SecretStr = SecretStr("")

    @property
    def grpc_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"


class UseCaseSourceSettings(ServiceSettings):
    """Where the service learns its use cases: the registry's catalogue, a compacted topic
    read from its beginning at start and followed while the service runs
    (:mod:`libs.usecase.follower`). There is no folder of specs: a use case is onboarded
    into the running factory with ``aif usecase apply FILE``."""

    usecases_topic: str = topics.USECASES
    # How long the start waits for the catalogue topic (its partitions, then its end).
    usecases_load_timeout_s: float = Field(default=30.0, gt=0, le=600)


class DatabaseSettings(ServiceSettings):
    """A service that keeps state in SQL (:mod:`libs.sql`). Left empty, ``database_url``
    is the embedded default: ``sqlite:///build/<service>/<service>.db``."""

    database_url: str = ""

    @model_validator(mode="before")
    @classmethod
    def _default_database(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("database_url"):
            path = REPO_ROOT / "build" / cls.service / f"{cls.service}.db"
            data = {**data, "database_url": f"sqlite:///{path}"}
        return data


class ConsumerSettings(ServiceSettings):
    """A service that follows Kafka topics. Left empty, ``consumer_group`` is the service's
    name, the prefix its Kafka ACLs grant (:func:`libs.auth.kafka_acls.group_prefix`)."""

    consume: bool = True
    consumer_group: str = ""
    dead_letter_topic: str = topics.DEAD_LETTER
    # What one compressed record batch, and one record, may inflate to in the consumer; a
    # batch or record past its cap is skipped unbuffered and dead-lettered (libs.bus.compression).
    # One pair per process: the service passes them to its consumers (ingestion's raw topics,
    # EventConsumer's max_batch_bytes / max_record_bytes).
    kafka_max_batch_bytes: int = Field(
        default=compression.DEFAULT_MAX_BATCH_BYTES, ge=1024 * 1024, le=1024 * 1024 * 1024
    )
    kafka_max_record_bytes: int = Field(
        default=compression.DEFAULT_MAX_RECORD_BYTES, ge=64 * 1024, le=1024 * 1024 * 1024
    )

    @model_validator(mode="before")
    @classmethod
    def _default_group(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("consumer_group"):
            data = {**data, "consumer_group": cls.service}
        return data


class ClientSettings(ServiceSettings):
    """A service that calls other services: the bearer token it sends. ``service_token_file``
    is the path of a file holding it (a mounted secret, re-read when it changes: see
    :mod:`libs.settings.token_file`); ``service_token`` the token itself; neither: none."""

    service_token: SecretStr = SecretStr("")
    service_token_file: Path | None = None
    # TLS of this service's calls to the others (PEM paths; libs.auth.tls.client_tls), all
    # unset: plaintext (local development). client_tls_ca: the CA that signed the servers'
    # certificates; client_tls_cert/_key: this service's certificate for mutual TLS (unset:
    # its server pair tls_cert/tls_key, which dev certificates allow at both ends);
    # client_tls_server_name: the name to expect in a server's certificate when the
    # target's host is not in it.
    client_tls_ca: str = ""
    client_tls_cert: str = ""
    client_tls_key: str = ""
    client_tls_server_name: str = ""

    @field_validator("service_token_file")
    @classmethod
    def _readable_token_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        token = info.data.get("service_token")
        if isinstance(token, SecretStr) and token.get_secret_value():
            raise ValueError("set service_token or service_token_file, not both")
        read_token(value)  # a missing or empty file stops the service at start
        return value

    def bearer_token(self) -> str | Callable[[], str] | None:
        """What this service's client channels send (libs.rpc's ``token=``): the file's
        current token, the configured one, or None."""
        if self.service_token_file is not None:
            return TokenFile(self.service_token_file)
        return self.service_token.get_secret_value() or None


class RegistryClientSettings(ClientSettings):
    registry_target: str = "127.0.0.1:50055"


class FeatureStoreClientSettings(ClientSettings):
    featurestore_target: str = "127.0.0.1:50052"


def env_name(service: str, field: str) -> str:
    """The service-scoped variable name of a field, e.g. AIF_GATEWAY_GRPC_PORT."""
    return f"{PREFIX}{service.upper()}_{field.upper()}"


def load_settings(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Build ``cls`` from the environment or raise :class:`ConfigError` naming each bad variable."""
    env = os.environ if environ is None else environ
    if not cls.service:
        raise ConfigError(f"{cls.__name__} does not set its service name")
    scoped = f"{PREFIX}{cls.service.upper()}_"
    fields = cls.model_fields
    env = _renamed(cls, env)
    unknown = sorted(
        name for name in env if name.startswith(scoped) and name[len(scoped) :].lower() not in fields
    )
    if unknown:
        known = ", ".join(env_name(cls.service, f) for f in fields)
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {known}")

    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for field in fields:
        for name in (env_name(cls.service, field), f"{PREFIX}{field.upper()}"):
            if name in env:
                values[field] = env[name]
                source[field] = name
                break
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            var = source.get(field, env_name(cls.service, field))
            got = f" (got {env[var]!r})" if var in env else ""
            problems.append(f"{var}: {err['msg']}{got}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


def _renamed(cls: type[S], env: Mapping[str, str]) -> Mapping[str, str]:
    """``env`` with each renamed setting's old variable read as its new one."""
    moved = {env_name(cls.service, old): env_name(cls.service, new) for old, new in cls.renamed.items()}
    if not any(old in env for old in moved):
        return env
    out = dict(env)
    for old, new in moved.items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(f"{old} was renamed {new}: set {new} only")
        log.warning("%s is deprecated: it was renamed %s", old, new)
        out[new] = out.pop(old)
    return out


__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_AUTH_DIR",
    "DEFAULT_ISSUER",
    "ClientSettings",
    "ConsumerSettings",
    "DatabaseSettings",
    "FeatureStoreClientSettings",
    "RegistryClientSettings",
    "ServiceSettings",
    "UseCaseSourceSettings",
    "env_name",
    "load_settings",
]
