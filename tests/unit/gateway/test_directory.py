"""The alias book: static settings, ordering by change time, events of served use cases only."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.registry.v1 import events_pb2
from libs.bus import Event, EventMeta
from libs.errors import ConfigError
from libs.lifecycle.confirm import ForgedEvents, Unconfirmed
from libs.lifecycle.owners import AliasChange
from services.gateway.directory import AliasBook, AliasState, StaticDirectory, alias_events_handler


async def test_static_directory_parses_and_filters() -> None:
    d = StaticDirectory("loan_approval:champion=2, loan_approval:challenger=3,other:champion=1")
    states = await d.aliases(["loan_approval"])
    assert states == [
        AliasState("loan_approval", "champion", 2),
        AliasState("loan_approval", "challenger", 3),
    ]


@pytest.mark.parametrize(
    "spec", ["loan_approval=champion:2", "loan_approval:champion", "uc:champion=x", "uc:champion=²"]
)
def test_static_directory_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        StaticDirectory(spec)


def test_book_keeps_the_newest_change_and_tells_listeners() -> None:
    book = AliasBook()
    moved: list[str] = []
    book.listen(moved.append)
    assert book.apply(AliasState("uc", "champion", 1, changed_us=100))
    assert not book.apply(AliasState("uc", "champion", 1, changed_us=150))  # no move
    assert not book.apply(AliasState("uc", "champion", 7, changed_us=50))  # late event
    assert book.version("uc", "champion") == 1
    assert book.apply(AliasState("uc", "champion", 2, changed_us=200))
    assert moved == ["uc", "uc"] and book.version("uc", "challenger") == 0


def _event(use_case: str, alias: str, version: int, seconds: int, audit_id: str = "") -> Event:  # type: ignore[type-arg]
    payload = events_pb2.AliasChanged(
        use_case=use_case,
        alias=alias,
        new_version=version,
        changed_at=Timestamp(seconds=seconds),
        audit_event_id=audit_id,
    )
    meta = EventMeta.new("aifactory.registry.v1.AliasChanged", "v1", use_case, "registry")
    return Event(meta, payload, "t", 0, 0, None)


async def test_events_of_served_use_cases_and_aliases_only() -> None:
    book = AliasBook()
    handle = alias_events_handler(book, ["loan_approval"])
    await handle(_event("loan_approval", "champion", 4, 10))
    await handle(_event("loan_approval", "previous", 3, 11))
    await handle(_event("other", "champion", 9, 12))
    await handle(_event("loan_approval", "champion", 2, 5))  # replayed, older
    assert book.version("loan_approval", "champion") == 4
    assert book.version("loan_approval", "previous") == 0 and book.version("other", "champion") == 0


class _Registry:
    """The registry's GetAlias and audit log as the confirming handler reads them."""

    def __init__(self, *states: AliasState, audit: dict[str, AliasChange] | None = None) -> None:
        self.states = {(s.use_case, s.alias): s for s in states}
        self.audit = audit or {}
        self.asked = 0

    async def alias(self, use_case: str, alias: str) -> AliasState | None:
        self.asked += 1
        return self.states.get((use_case, alias))

    async def alias_change(self, use_case: str, audit_event_id: str) -> AliasChange | None:
        change = self.audit.get(audit_event_id)
        return change if change is not None and change.use_case == use_case else None


async def test_with_a_registry_an_event_moves_an_alias_only_as_the_registry_says() -> None:
    book = AliasBook()
    now_us = 1_000 * 1_000_000
    registry = _Registry(
        AliasState("loan_approval", "champion", 4, changed_us=now_us - 5_000_000),
        audit={"a-3": AliasChange("loan_approval", "champion", 3)},
    )
    forged = ForgedEvents("gateway")
    handle = alias_events_handler(
        book, ["loan_approval"], registry=registry, forged=forged, now_us=lambda: now_us
    )
    # The genuine change: the registry's version (and time) are applied, not the event's.
    await handle(_event("loan_approval", "champion", 4, now_us // 1_000_000 - 5))
    assert book.version("loan_approval", "champion") == 4 and not forged.counts
    # Far ahead, naming another version: forged (time capped at now + skew, still newer).
    with pytest.raises(Unconfirmed):
        await handle(_event("loan_approval", "champion", 9, now_us // 1_000_000 + 10 * 365 * 86400))
    assert book.version("loan_approval", "champion") == 4
    assert forged.counts == {"aifactory.registry.v1.AliasChanged": 1}
    # An older change of the same alias, since superseded (a replay of history, as the audit
    # log records it): no effect, not forged.
    await handle(_event("loan_approval", "champion", 3, now_us // 1_000_000 - 60, "a-3"))
    assert book.version("loan_approval", "champion") == 4 and sum(forged.counts.values()) == 1
    # Dated in the past but never made (no such audit entry, or one of another version): forged.
    for audit_id, version in (("a-made-up", 9), ("", 9), ("a-3", 9)):
        with pytest.raises(Unconfirmed):
            await handle(_event("loan_approval", "champion", version, now_us // 1_000_000 - 60, audit_id))
    assert book.version("loan_approval", "champion") == 4
    assert forged.counts == {"aifactory.registry.v1.AliasChanged": 4}
    # Unserved aliases and use cases are not even asked about.
    asked = registry.asked
    await handle(_event("loan_approval", "previous", 3, 11))
    await handle(_event("other", "champion", 9, 12))
    assert registry.asked == asked


async def test_without_a_registry_event_times_are_capped_at_now_plus_skew() -> None:
    book = AliasBook()
    now_us = 1_000 * 1_000_000
    handle = alias_events_handler(book, ["uc"], skew_s=30, now_us=lambda: now_us)
    await handle(_event("uc", "champion", 9, 10 * 365 * 86400))  # dated ten years ahead
    assert book.version("uc", "champion") == 9
    # A later genuine change (just after the cap) still wins: the forged date pins nothing.
    book.apply(AliasState("uc", "champion", 2, changed_us=now_us + 31 * 1_000_000))
    assert book.version("uc", "champion") == 2
