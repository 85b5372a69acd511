"""The use cases a service knows now, kept current while it runs.

The registry owns the catalogue (``ApplyUseCase``, ``RetireUseCase``) and publishes each
change on a compacted topic; :mod:`libs.usecase.follower` reads it into a
:class:`Catalogue`. ``catalogue.usecases`` is one :class:`~libs.usecase.UseCases` that the
catalogue changes in place: code that looks a use case up when it needs it (``require``)
always sees the current set. Code that prepares something per use case (a consumer's
topics, Feast views, a model in Triton) registers a listener with :meth:`Catalogue.listen`
and is told of every change after the set changed, in order.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from libs.retry import RetryPolicy
from libs.usecase import UseCase, UseCases

log = logging.getLogger(__name__)

# Health service names (grpc.health.v1) a following service reports, beside "".
HEALTH_ANY = "usecases"  # SERVING once the service knows one use case or more


def health_name(use_case: str) -> str:
    """SERVING once the service has set the use case up; NOT_SERVING when retired."""
    return f"usecase/{use_case}"


# A listener that fails (Feast or the broker down) is tried again; past this, the error
# ends the follower, and so fails the service: the restart sets every use case up anew.
LISTENER_RETRY = RetryPolicy(attempts=5, initial_s=0.5, max_s=10.0, jitter_s=0.5, retry_on=(Exception,))


class ChangeKind(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    RETIRED = "retired"


@dataclass(frozen=True)
class Entry:
    """One use case's state in the catalogue, as the registry published it."""

    name: str
    version: int
    active: bool
    spec: UseCase
    sha256: str = ""


@dataclass(frozen=True)
class Change:
    """What changed in the set: ``spec`` is the new spec (for a retirement: the last one),
    ``previous`` the spec known before (None for a use case new to this service)."""

    kind: ChangeKind
    spec: UseCase
    previous: UseCase | None = None

    @property
    def name(self) -> str:
        return self.spec.name


Listener = Callable[[Change], Awaitable[None]]
Reporter = Callable[[str, bool], Awaitable[None]]


class Catalogue:
    """The live set of use cases of one service (see the module docstring)."""

    def __init__(self, usecases: Mapping[str, UseCase] | None = None, *, source: str = "fixed") -> None:
        self.usecases = UseCases(usecases or {})
        # Where the set comes from, for logs ("topic aif.usecases", "fixed").
        self.source = source
        self.retired: dict[str, UseCase] = {}
        self._state: dict[str, tuple[int, bool]] = {n: (uc.version, True) for n, uc in self.usecases.items()}
        self._listeners: list[Listener] = []
        self._reporter: Reporter | None = None
        # The CatalogueFollower feeding this catalogue (None: a fixed set, or the registry's own).
        self.follower: Any = None
        # record() may run in a worker thread (the registry's own commits).
        self._lock = threading.Lock()

    def __contains__(self, name: object) -> bool:
        return name in self.usecases

    def names(self) -> list[str]:
        return sorted(self.usecases)

    async def sync(self, timeout_s: float = 10.0) -> bool:
        """Wait until every change published so far is applied here (a consumer that meets a
        use case it does not know asks this before giving up on the event); True when it
        could tell."""
        if self.follower is None:
            return True
        return bool(await self.follower.sync(timeout_s))

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` after each change of the set (not for what is known already)."""
        self._listeners.append(listener)

    def report_to(self, reporter: Reporter) -> None:
        """Where health is reported (``reporter(health name, serving)``)."""
        self._reporter = reporter

    def record(self, entry: Entry) -> Change | None:
        """Take ``entry`` into the set without telling anyone; None when it is not newer
        than what is known (a replayed or stale entry)."""
        with self._lock:
            known = self._state.get(entry.name)
            if known is not None and (
                entry.version < known[0] or (entry.version == known[0] and entry.active == known[1])
            ):
                return None
            was_active = entry.name in self.usecases
            previous = self.usecases.get(entry.name) or self.retired.get(entry.name)
            self._state[entry.name] = (entry.version, entry.active)
            if entry.active:
                self.usecases[entry.name] = entry.spec
                self.retired.pop(entry.name, None)
                kind = ChangeKind.UPDATED if was_active else ChangeKind.ADDED
            else:
                self.usecases.pop(entry.name, None)
                self.retired[entry.name] = entry.spec
                kind = ChangeKind.RETIRED
            return Change(kind, entry.spec, previous)

    async def notify(self, change: Change) -> None:
        """Run the listeners on ``change`` (each retried on failure), then report health.

        A listener that still fails raises: the service cannot honour the change."""
        for listener in self._listeners:
            name = getattr(listener, "__qualname__", repr(listener))
            await LISTENER_RETRY.call(
                f"applying {change.kind} use case {change.name} ({name})", functools.partial(listener, change)
            )
        verb = {"added": "now serves", "updated": "applied version", "retired": "retired"}[change.kind]
        log.info(
            "use case %s: %s v%d (%s); knows %d use case(s): %s",
            change.name,
            verb,
            change.spec.version,
            self.source,
            len(self.usecases),
            ", ".join(self.names()) or "none",
        )
        await self.report_health(change.name)

    async def apply(self, entry: Entry) -> Change | None:
        """:meth:`record` then :meth:`notify`: the follower's way in."""
        change = self.record(entry)
        if change is not None:
            await self.notify(change)
        return change

    async def report_health(self, name: str | None = None) -> None:
        """Report ``name`` (or every known use case) and the whole set."""
        if self._reporter is None:
            return
        names = [name] if name is not None else [*self.usecases, *self.retired]
        for n in names:
            await self._reporter(health_name(n), n in self.usecases)
        await self._reporter(HEALTH_ANY, bool(self.usecases))

    def describe(self) -> str:
        """One line for the logs: what the service knows, or that it knows nothing."""
        if self.usecases:
            return f"{len(self.usecases)} use case(s) from {self.source}: {', '.join(self.names())}"
        return (
            f"no use case yet ({self.source}): nothing is ingested, trained, served or "
            "monitored until one is applied (aif usecase apply FILE)"
        )


__all__ = [
    "HEALTH_ANY",
    "LISTENER_RETRY",
    "Catalogue",
    "Change",
    "ChangeKind",
    "Entry",
    "Listener",
    "health_name",
]
