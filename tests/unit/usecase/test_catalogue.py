"""The live set of use cases a service knows (libs.usecase.catalogue), without Kafka."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from libs.usecase import UseCase, load_default
from libs.usecase import catalogue as catalogue_module
from libs.usecase.catalogue import HEALTH_ANY, Catalogue, Change, ChangeKind, Entry, health_name

SHIPPED = load_default()
LOAN, SEGMENTS = SHIPPED["loan_approval"], SHIPPED["image_segments"]


def entry(spec: UseCase, version: int | None = None, *, active: bool = True) -> Entry:
    version = version or spec.version
    return Entry(spec.name, version, active, spec.model_copy(update={"version": version}))


class Recorder:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.seen: list[tuple[ChangeKind, str, int, bool]] = []
        self.health: dict[str, bool] = {}

    async def listener(self, change: Change) -> None:
        # Called after the set changed: the listener sees the new state.
        self.seen.append((change.kind, change.name, change.spec.version, change.name in self.catalogue))

    async def report(self, name: str, serving: bool) -> None:
        self.health[name] = serving


def test_changes_reach_listeners_in_order_and_stale_entries_are_ignored() -> None:
    catalogue = Catalogue()
    rec = Recorder(catalogue)
    catalogue.listen(rec.listener)
    catalogue.report_to(rec.report)

    async def run() -> None:
        assert await catalogue.apply(entry(LOAN)) is not None
        assert await catalogue.apply(entry(LOAN)) is None  # replayed: nothing new
        await catalogue.apply(entry(SEGMENTS))
        await catalogue.apply(entry(LOAN, 2))
        assert await catalogue.apply(entry(LOAN, 1)) is None  # older than what is known
        await catalogue.apply(entry(SEGMENTS, active=False))
        await catalogue.apply(entry(LOAN, 3))

    asyncio.run(run())
    assert rec.seen == [
        (ChangeKind.ADDED, "loan_approval", 1, True),
        (ChangeKind.ADDED, "image_segments", 1, True),
        (ChangeKind.UPDATED, "loan_approval", 2, True),
        (ChangeKind.RETIRED, "image_segments", 1, False),
        (ChangeKind.UPDATED, "loan_approval", 3, True),
    ]
    assert catalogue.names() == ["loan_approval"] and catalogue.usecases["loan_approval"].version == 3
    assert list(catalogue.retired) == ["image_segments"]
    assert rec.health == {
        health_name("loan_approval"): True,
        health_name("image_segments"): False,
        HEALTH_ANY: True,
    }


def test_a_retired_use_case_comes_back_with_its_next_version() -> None:
    catalogue = Catalogue()
    for e in (entry(LOAN), entry(LOAN, active=False), entry(LOAN, 2)):
        catalogue.record(e)
    assert catalogue.names() == ["loan_approval"] and not catalogue.retired


def test_the_live_set_is_one_object_others_can_hold() -> None:
    catalogue = Catalogue()
    held = catalogue.usecases
    assert type(held).view(held) is held  # UseCases.view keeps the live set, a dict is copied
    catalogue.record(entry(LOAN))
    assert held.require("loan_approval") is catalogue.usecases["loan_approval"]


def test_an_empty_service_says_so() -> None:
    catalogue = Catalogue(source="topic aif.usecases")
    assert "no use case yet (topic aif.usecases)" in catalogue.describe()
    assert "aif usecase apply" in catalogue.describe()
    health: dict[str, bool] = {}

    async def report(name: str, serving: bool) -> None:
        health[name] = serving

    catalogue.report_to(report)
    asyncio.run(catalogue.report_health())
    assert health == {HEALTH_ANY: False}


def test_a_listener_that_keeps_failing_fails_the_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        catalogue_module,
        "LISTENER_RETRY",
        replace(catalogue_module.LISTENER_RETRY, attempts=3, initial_s=0.01),
    )
    catalogue = Catalogue()
    calls: list[str] = []

    async def flaky(change: Change) -> None:
        calls.append(change.name)
        if len(calls) < 3:
            raise OSError("feast is down")

    catalogue.listen(flaky)
    asyncio.run(catalogue.apply(entry(LOAN)))
    assert calls == ["loan_approval"] * 3  # retried until it worked

    async def broken(change: Change) -> None:
        raise OSError("for good")

    catalogue.listen(broken)
    with pytest.raises(OSError, match="for good"):
        asyncio.run(catalogue.apply(entry(SEGMENTS)))
