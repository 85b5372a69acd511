"""Which version of each use case's model is champion or challenger, as the registry says.

:class:`AliasBook` holds the gateway's view; it is filled at start by a
:class:`ModelDirectory` (the registry's ``GetAlias`` over gRPC, or static settings
for tests) and then kept current by ``AliasChanged`` events from the
model-promoted topic (:func:`alias_events_handler`). Each entry carries the time
of its change, so a replayed or late event never moves an alias back.

The Triton model name is the use case name (the registry's export contract), and
so is the registry's model name.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Container, Iterable
from dataclasses import dataclass
from typing import Protocol

import grpc
from google.protobuf.message import Message

from aifactory.registry.v1 import events_pb2 as registry_events
from aifactory.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from libs.bus import Event
from libs.errors import ConfigError
from services.gateway.routing import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

SERVED_ALIASES = (CHAMPION, CHALLENGER)


@dataclass(frozen=True)
class AliasState:
    use_case: str
    alias: str
    version: int  # 0: unset
    changed_us: int = 0  # when the registry changed it (0: unknown, e.g. static)


class ModelDirectory(Protocol):
    async def aliases(self, use_cases: Iterable[str]) -> list[AliasState]:
        """Current champion/challenger of each use case (aliases not set are left out)."""
        ...


Listener = Callable[[str], None]


class AliasBook:
    """The gateway's view of the served aliases; tells listeners which use case changed."""

    def __init__(self) -> None:
        self._state: dict[tuple[str, str], AliasState] = {}
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def version(self, use_case: str, alias: str) -> int:
        state = self._state.get((use_case, alias))
        return state.version if state else 0

    def apply(self, state: AliasState) -> bool:
        """Records ``state`` unless an entry changed later is already known; True if it moved."""
        key = (state.use_case, state.alias)
        current = self._state.get(key)
        if current is not None and state.changed_us and current.changed_us > state.changed_us:
            return False  # a late or replayed event: the book already knows better
        self._state[key] = state
        moved = current is None or current.version != state.version
        if moved:
            for listener in self._listeners:
                listener(state.use_case)
        return moved


class StaticDirectory:
    """Aliases from a setting: ``"loan_approval:champion=2,loan_approval:challenger=3"``."""

    def __init__(self, spec: str) -> None:
        self._states: list[AliasState] = []
        for item in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, version = item.partition("=")
            use_case, colon, alias = key.partition(":")
            if not (sep and colon and use_case and alias and version.strip().isdigit()):
                raise ConfigError(f"static_aliases: {item!r} is not use_case:alias=version")
            self._states.append(AliasState(use_case.strip(), alias.strip(), int(version)))

    async def aliases(self, use_cases: Iterable[str]) -> list[AliasState]:
        wanted = set(use_cases)
        return [s for s in self._states if s.use_case in wanted]


class RegistryDirectory:
    """Asks the registry (``GetAlias``) for the champion and challenger of each use case."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 3.0) -> None:
        self._stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self._timeout = timeout_s

    async def aliases(self, use_cases: Iterable[str]) -> list[AliasState]:
        out: list[AliasState] = []
        for use_case in use_cases:
            for alias in SERVED_ALIASES:
                req = registry_service_pb2.GetAliasRequest(
                    use_case=use_case, model_name=use_case, alias=alias
                )
                try:
                    resp = await self._stub.GetAlias(req, timeout=self._timeout)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() is grpc.StatusCode.NOT_FOUND:
                        continue
                    raise
                updated = resp.alias.updated_at
                out.append(
                    AliasState(
                        use_case,
                        alias,
                        resp.alias.version,
                        updated.seconds * 1_000_000 + updated.nanos // 1000,
                    )
                )
        return out


def state_of(event: registry_events.AliasChanged) -> AliasState:
    at = event.changed_at
    return AliasState(
        event.use_case, event.alias, event.new_version, at.seconds * 1_000_000 + at.nanos // 1000
    )


def alias_events_handler(
    book: AliasBook, use_cases: Container[str]
) -> Callable[[Event[Message]], Awaitable[None]]:
    """The model-promoted topic's handler: applies served aliases of served use cases.

    ``use_cases`` is looked in at each event, so a live set (the gateway's use cases from
    the catalogue) admits a use case applied while running."""
    served = use_cases

    async def handle(event: Event[Message]) -> None:
        payload = event.payload
        assert isinstance(payload, registry_events.AliasChanged)
        if payload.use_case in served and payload.alias in SERVED_ALIASES:
            if book.apply(state_of(payload)):
                log.info(
                    "alias %s of %s -> version %d (%s)",
                    payload.alias,
                    payload.use_case,
                    payload.new_version,
                    payload.reason or "no reason given",
                )

    return handle
