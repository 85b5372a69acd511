"""The factory as ``aif`` reaches it: addresses, token and TLS from flags or a context."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import typer

from aif.cli import config
from aif.cli.output import CliError, rpc_error
from libs.auth.tls import env_client_tls
from libs.bus.security import KafkaSecurity
from libs.errors import AifError
from libs.rpc.client import ClientTls
from libs.rpc.client import channel as rpc_channel

T = TypeVar("T")


@dataclass
class Remote:
    """What every command that calls the factory needs (``ctx.obj``)."""

    settings: dict[str, str] = field(default_factory=lambda: dict(config.DEFAULTS))
    context: str = ""
    token: str | None = None

    @classmethod
    def build(cls, context: str | None, flags: Mapping[str, str | None], token: str | None) -> Remote:
        """Flags over the context over the defaults; the token: ``token``, else the token file."""
        name, settings = config.resolve(config.load(), context)
        settings.update({k: v for k, v in flags.items() if v})
        return cls(settings, name, token or None)

    def target(self, service: str, override: str | None = None) -> str:
        return override or self.settings[service]

    def bearer(self, override: str | None = None) -> str | None:
        if override:
            return override
        if self.token:
            return self.token
        path = self.settings.get("token-file")
        if not path:
            return None
        try:
            return Path(path).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(
                f"cannot read the token file {path}: {exc.strerror}; fix --token-file or the context"
            ) from None

    def tls(self) -> ClientTls | None:
        """``--tls-ca``/``--tls-cert``/``--tls-key`` (or the context's), else
        ``AIF_CLIENT_TLS_*`` as every command-line caller reads them; neither: plaintext."""
        ca = self.settings.get("tls-ca")
        if not ca:
            try:
                return env_client_tls()
            except AifError as exc:
                raise CliError(f"{exc.message}: fix AIF_CLIENT_TLS_* or give --tls-ca") from None
        try:
            return ClientTls.from_files(ca, self.settings.get("tls-cert"), self.settings.get("tls-key"))
        except OSError as exc:
            raise CliError(
                f"cannot read TLS file {exc.filename}: {exc.strerror}; fix --tls-ca/--tls-cert/--tls-key"
            ) from None

    def kafka(self) -> dict[str, Any]:
        """aiokafka client keywords for ``--kafka`` as the context says: none for the open
        local broker, SASL_SSL (SCRAM) with the password read from its file otherwise."""
        protocol = self.settings.get("kafka-security-protocol", "PLAINTEXT").upper()
        if protocol == "PLAINTEXT":
            return {}
        password_file = self.settings.get("kafka-password-file", "")
        if not (self.settings.get("kafka-username") and password_file):
            raise CliError(
                f"Kafka {protocol} needs kafka-username and kafka-password-file in the context "
                "(aif context set NAME --kafka-username ... --kafka-password-file ...)"
            )
        try:
            password = Path(password_file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(
                f"cannot read the Kafka password file {password_file}: {exc.strerror}; fix the context"
            ) from None
        security = KafkaSecurity(
            protocol,
            self.settings.get("kafka-sasl-mechanism", "SCRAM-SHA-512"),
            self.settings["kafka-username"],
            password,
            str(Path(self.settings["kafka-ca"]).expanduser()) if self.settings.get("kafka-ca") else "",
        )
        try:
            return security.client_kwargs()
        except (AifError, OSError) as exc:  # e.g. an unreadable CA file
            raise CliError(f"Kafka {protocol}: {exc}; fix kafka-ca in the context") from None

    @contextlib.asynccontextmanager
    async def channel(
        self, service: str, *, target: str | None = None, token: str | None = None
    ) -> AsyncIterator[grpc.aio.Channel]:
        """A channel to ``service`` sending the token; a failed call becomes one line."""
        address = self.target(service, target)
        tls = self.tls()
        bearer = self.bearer(token)
        try:
            async with rpc_channel(address, tls, token=bearer) as channel:
                yield channel
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, service, address) from None


@dataclass(frozen=True)
class Pending:
    """The root options, until a command needs the :class:`Remote` they make."""

    context: str | None
    flags: Mapping[str, str | None]
    token: str | None


def remote(ctx: typer.Context) -> Remote:
    """The :class:`Remote` of the root options, the config file read on first use."""
    root = ctx.find_root()
    if isinstance(root.obj, Remote):
        return root.obj
    pending = root.obj if isinstance(root.obj, Pending) else Pending(None, {}, None)
    root.obj = Remote.build(pending.context, pending.flags, pending.token)
    return root.obj


def run(awaitable: Awaitable[T]) -> T:
    """Runs one command's calls on a fresh event loop."""

    async def main() -> T:
        return await awaitable

    return asyncio.run(main())
