"""Which version of each use case's model is champion or challenger, as the registry says.

:class:`AliasBook` holds the gateway's view; it is filled at start by a
:class:`ModelDirectory` (the registry's ``GetAlias`` over gRPC, or static settings
for tests) and then kept current by ``AliasChanged`` events from the
model-promoted topic (:func:`alias_events_handler`). Each entry carries the time
of its change, so a replayed or late event never moves an alias back.

An ``AliasChanged`` event is a hint, not authority (anyone who can write the topic can
write one): with a registry, the handler re-reads the alias it names from the registry
and applies the registry's answer, never the event's version or time. An event that
claims a newer state than the registry has (another version, dated after the registry's
last change of that alias) is forged: counted (``aif_events_forged_total``), logged and
dead-lettered. So is one dated before the registry's last change that the registry's
audit log does not record (the audit entry it names must be a change of that alias to
that version): a superseded genuine change, replayed with the topic's history at each
start, is a no-op, while a forgery dated in the past is counted like any other. Without a registry (static aliases, benchmarks) there is no owner to ask:
events are applied as they come, their times capped at now + a small skew.

The Triton model name is the use case name (the registry's export contract), and
so is the registry's model name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Container, Iterable
from dataclasses import dataclass
from typing import Protocol

import grpc
from google.protobuf.message import Message

from aifactory.registry.v1 import events_pb2 as registry_events
from aifactory.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from libs.bus import Event
from libs.bus.types import event_type_of
from libs.errors import ConfigError
from libs.lifecycle.confirm import DEFAULT_SKEW_S, ForgedEvents, clamp_us
from libs.lifecycle.owners import AliasChange, GrpcRegistryAudit
from libs.rpc.errors import typed_rpc_error
from services.gateway.oip import parse_version
from services.gateway.routing import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

SERVED_ALIASES = (CHAMPION, CHALLENGER)
ALIAS_CHANGED_TYPE = event_type_of(registry_events.AliasChanged)


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
            if not (sep and colon and use_case and alias and parse_version(version.strip()) is not None):
                raise ConfigError(f"static_aliases: {item!r} is not use_case:alias=version")
            self._states.append(AliasState(use_case.strip(), alias.strip(), int(version)))

    async def aliases(self, use_cases: Iterable[str]) -> list[AliasState]:
        wanted = set(use_cases)
        return [s for s in self._states if s.use_case in wanted]


class RegistryDirectory:
    """Asks the registry (``GetAlias``) for the champion and challenger of each use case,
    and its audit log (``ListAuditEvents``) for a past alias change."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 3.0) -> None:
        self._stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self._timeout = timeout_s
        self._audit = GrpcRegistryAudit(channel, timeout_s=timeout_s)

    async def alias_change(self, use_case: str, audit_event_id: str) -> AliasChange | None:
        """The alias change the registry's audit entry ``audit_event_id`` records (None: none)."""
        return await self._audit.alias_change(use_case, audit_event_id)

    async def aliases(self, use_cases: Iterable[str]) -> list[AliasState]:
        out: list[AliasState] = []
        for use_case in use_cases:
            for alias in SERVED_ALIASES:
                state = await self.alias(use_case, alias)
                if state is not None:
                    out.append(state)
        return out

    async def alias(self, use_case: str, alias: str) -> AliasState | None:
        """The alias as the registry has it now (None: not set)."""
        req = registry_service_pb2.GetAliasRequest(use_case=use_case, model_name=use_case, alias=alias)
        try:
            resp = await self._stub.GetAlias(req, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise
        updated = resp.alias.updated_at
        return AliasState(
            use_case, alias, resp.alias.version, updated.seconds * 1_000_000 + updated.nanos // 1000
        )


class AliasReader(Protocol):
    async def alias(self, use_case: str, alias: str) -> AliasState | None: ...

    async def alias_change(self, use_case: str, audit_event_id: str) -> AliasChange | None: ...


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def state_of(event: registry_events.AliasChanged) -> AliasState:
    at = event.changed_at
    return AliasState(
        event.use_case, event.alias, event.new_version, at.seconds * 1_000_000 + at.nanos // 1000
    )


def alias_events_handler(
    book: AliasBook,
    use_cases: Container[str],
    *,
    registry: AliasReader | None = None,
    forged: ForgedEvents | None = None,
    skew_s: float = DEFAULT_SKEW_S,
    now_us: Callable[[], int] = _now_us,
) -> Callable[[Event[Message]], Awaitable[None]]:
    """The model-promoted topic's handler: applies served aliases of served use cases,
    as ``registry`` says they are (see the module docstring).

    ``use_cases`` is looked in at each event, so a live set (the gateway's use cases from
    the catalogue) admits a use case applied while running."""
    served = use_cases
    rejected = forged or ForgedEvents("gateway")

    async def handle(event: Event[Message]) -> None:
        payload = event.payload
        assert isinstance(payload, registry_events.AliasChanged)
        if payload.use_case not in served or payload.alias not in SERVED_ALIASES:
            return
        claimed = state_of(payload)
        claimed = AliasState(
            claimed.use_case, claimed.alias, claimed.version, clamp_us(claimed.changed_us, now_us(), skew_s)
        )
        if registry is None:
            applied = claimed
        else:
            try:
                current = await registry.alias(payload.use_case, payload.alias)
            except grpc.aio.AioRpcError as exc:
                raise typed_rpc_error(exc, "registry GetAlias") from None
            if current is not None:
                # The registry's own time, capped like any other before it is compared.
                current = AliasState(
                    current.use_case,
                    current.alias,
                    current.version,
                    clamp_us(current.changed_us, now_us(), skew_s),
                )
            version = current.version if current else 0
            since = current.changed_us if current else 0
            why = ""
            if claimed.version != version:
                if claimed.changed_us > since:
                    why = "the registry has"
                else:
                    # Dated before the registry's last change: genuine only as a change the
                    # registry made then, and has since superseded (its audit log says).
                    past = await registry.alias_change(payload.use_case, payload.audit_event_id)
                    if past != AliasChange(payload.use_case, payload.alias, claimed.version):
                        why = (
                            f"no such change in the registry's audit log ({payload.audit_event_id!r}); it has"
                        )
            if why:
                if current is not None:
                    book.apply(current)
                raise rejected.reject(
                    ALIAS_CHANGED_TYPE,
                    event.meta.event_id,
                    f"{payload.alias} of {payload.use_case} -> v{claimed.version}, but {why} v{version}",
                )
            if current is None:
                return  # an older change of an alias since removed: nothing to serve
            applied = current
        if book.apply(applied):
            log.info(
                "alias %s of %s -> version %d (%s)",
                applied.alias,
                applied.use_case,
                applied.version,
                "confirmed by the registry" if registry is not None else "event, no registry to ask",
            )

    return handle
