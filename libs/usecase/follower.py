"""Following the registry's use-case catalogue on its compacted topic.

Every service starts the same way (:func:`load_catalogue`): it reads the topic from its
beginning up to the end offsets it has at that moment, so the service is built knowing
every use case onboarded so far; then (:func:`follow_catalogue`, the last step of its
``build``) it follows the topic live, and each change runs the service's listeners
(:meth:`~libs.usecase.catalogue.Catalogue.listen`): a new use case is taken up, an
updated one applied, a retired one dropped, with no restart.

The topic is read without a consumer group (every instance reads all of it, and keeps
no offsets: each start reads it again, which compaction keeps short). A message is a
``UseCaseChanged`` keyed by the use case's name; one this service cannot read (an
unknown type, a spec its version of ``libs.usecase`` refuses) is logged and skipped, and
the use case's health stays NOT_SERVING.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from google.protobuf.message import DecodeError

from aifactory.registry.v1 import events_pb2 as registry_events
from libs.bus import headers as h
from libs.bus.admin import ensure_catalogue_topic
from libs.bus.security import KafkaSecurity
from libs.bus.types import event_type_of
from libs.usecase import UseCase, UseCaseError, parse_usecase
from libs.usecase.catalogue import Catalogue, Entry

if TYPE_CHECKING:
    from libs.runtime import Service
    from libs.settings import UseCaseSourceSettings

log = logging.getLogger(__name__)

EVENT_TYPE = event_type_of(registry_events.UseCaseChanged)
# While a service knows no use case, it says so this often (and at start).
EMPTY_REMINDER_S = 300.0


def entry_of(event: registry_events.UseCaseChanged) -> Entry:
    """The catalogue entry an event carries; :class:`~libs.usecase.UseCaseError` when its
    spec does not validate here."""
    spec = parse_usecase(event.spec_yaml, f"{event.use_case} v{event.version} (catalogue)")
    if spec.name != event.use_case:
        raise UseCaseError(spec.name, "name", None, f"the entry is keyed {event.use_case!r}")
    return Entry(
        name=event.use_case,
        version=int(event.version),
        active=event.state != registry_events.USE_CASE_STATE_RETIRED,
        spec=spec,
        sha256=event.spec_sha256,
    )


class CatalogueFollower:
    """Reads the catalogue topic into ``catalogue``: :meth:`load` once, then :meth:`run`."""

    def __init__(
        self,
        bootstrap_servers: str,
        catalogue: Catalogue,
        *,
        topic: str,
        security: KafkaSecurity | None = None,
        client_id: str = "usecases",
        poll_ms: int = 500,
    ) -> None:
        self.catalogue = catalogue
        self.topic = topic
        self._bootstrap = bootstrap_servers
        self._security = security
        self._poll_ms = poll_ms
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **(security.client_kwargs() if security else {}),
        )
        self._partitions: list[TopicPartition] = []
        # Offset after the last message applied, per partition (what sync() waits for).
        self._done: dict[TopicPartition, int] = {}
        self._progress = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._started = False
        self.skipped = 0

    async def load(self, timeout_s: float = 30.0) -> None:
        """Read the topic from its beginning to its current end; the listeners are not
        called (what is known at start is what the service is built with)."""
        # Created here too when missing (compacted: a default topic would lose the catalogue);
        # its owner, the registry, puts right the configs of one an early writer auto-created.
        await ensure_catalogue_topic(self._bootstrap, self.topic, security=self._security, align=False)
        await self._consumer.start()
        self._started = True
        deadline = time.monotonic() + timeout_s
        if not await self._assign(deadline):
            log.warning(
                "catalogue topic %s has no partitions after %.0fs: starting with no use case, "
                "following it once it exists",
                self.topic,
                timeout_s,
            )
            return
        end = await self._consumer.end_offsets(self._partitions)
        while not await self._reached(end):
            if time.monotonic() > deadline:
                log.warning(
                    "catalogue %s not read to its end within %.0fs; the rest follows live",
                    self.topic,
                    timeout_s,
                )
                return
            batches = await self._consumer.getmany(timeout_ms=self._poll_ms)
            for tp, records in batches.items():
                for record in records:
                    entry = self._entry(record)
                    if entry is not None:
                        self.catalogue.record(entry)
                    self._done[tp] = record.offset + 1

    async def run(self) -> None:
        """Apply every change as it arrives, until :meth:`stop`."""
        if not self._started:
            await self._consumer.start()
            self._started = True
        reminded = time.monotonic()
        try:
            while not self._stopping.is_set():
                if not self._partitions and not await self._assign(time.monotonic() + 2.0):
                    await self._pause(2.0)
                    continue
                batches = await self._consumer.getmany(timeout_ms=self._poll_ms)
                for tp, records in batches.items():
                    for record in records:
                        entry = self._entry(record)
                        if entry is not None:
                            await self.catalogue.apply(entry)
                        async with self._progress:
                            self._done[tp] = record.offset + 1
                            self._progress.notify_all()
                if not self.catalogue.usecases and time.monotonic() - reminded > EMPTY_REMINDER_S:
                    reminded = time.monotonic()
                    log.warning("this service knows %s", self.catalogue.describe())
        finally:
            await self._consumer.stop()

    async def stop(self) -> None:
        self._stopping.set()

    async def sync(self, timeout_s: float = 10.0) -> bool:
        """Wait until every change published so far is applied here; False on timeout."""
        if not self._partitions:
            return False
        try:
            end = await asyncio.wait_for(self._consumer.end_offsets(self._partitions), timeout_s)
        except Exception as exc:  # noqa: BLE001 - a caller that asked goes on without
            log.warning("catalogue %s: cannot read its end offsets (%r)", self.topic, exc)
            return False

        def caught_up() -> bool:
            return all(self._done.get(tp, 0) >= end[tp] for tp in self._partitions)

        async with self._progress:
            try:
                await asyncio.wait_for(self._progress.wait_for(caught_up), timeout_s)
            except TimeoutError:
                return False
        return True

    # -- internals ----------------------------------------------------------------------

    async def _assign(self, deadline: float) -> bool:
        while True:
            parts = self._consumer.partitions_for_topic(self.topic)
            if parts:
                self._partitions = [TopicPartition(self.topic, p) for p in sorted(parts)]
                self._consumer.assign(self._partitions)
                await self._consumer.seek_to_beginning(*self._partitions)
                return True
            if time.monotonic() > deadline or self._stopping.is_set():
                return False
            # Ask the broker again (the topic may have just been created).
            with contextlib.suppress(Exception):
                await self._consumer._client.force_metadata_update()  # noqa: SLF001
            await self._pause(0.2)

    async def _reached(self, end: Mapping[TopicPartition, int]) -> bool:
        for tp in self._partitions:
            if await self._consumer.position(tp) < end[tp]:
                return False
            self._done.setdefault(tp, end[tp])
        return True

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _entry(self, record: ConsumerRecord) -> Entry | None:
        name = record.key.decode("utf-8", "replace") if record.key else ""
        where = f"{record.topic}/{record.partition}/{record.offset}"
        headers = {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers or ()}
        if record.value is None:
            # A tombstone (written by hand: the registry retires with an entry): the use
            # case is gone; keep its last spec as retired.
            current = self.catalogue.usecases.get(name)
            if current is None:
                return None
            return Entry(name, current.version, False, current)
        if headers.get(h.EVENT_TYPE, EVENT_TYPE) != EVENT_TYPE:
            log.warning("catalogue %s: skipping a %s", where, headers.get(h.EVENT_TYPE))
            self.skipped += 1
            return None
        try:
            event = registry_events.UseCaseChanged.FromString(record.value)
            return entry_of(event)
        except (DecodeError, UseCaseError) as exc:
            self.skipped += 1
            log.error(
                "catalogue %s: use case %r cannot be taken up by this service (%s); it stays "
                "unknown here until a spec it can read is applied",
                where,
                name,
                getattr(exc, "message", exc),
            )
            return None


async def load_catalogue(
    settings: UseCaseSourceSettings, *, fixed: Mapping[str, UseCase] | None = None
) -> Catalogue:
    """The catalogue a starting service is built with: the topic read to its end, or, with
    ``fixed``, those use cases and no topic (tests that build a service in-process)."""
    if fixed is not None:
        return Catalogue(fixed, source="fixed at start")
    catalogue = Catalogue(source=f"topic {settings.usecases_topic}")
    follower = CatalogueFollower(
        settings.kafka_bootstrap,
        catalogue,
        topic=settings.usecases_topic,
        security=KafkaSecurity.from_settings(settings),
        client_id=f"{settings.service}-usecases",
    )
    try:
        await follower.load(settings.usecases_load_timeout_s)
    except BaseException:
        with contextlib.suppress(Exception):
            await follower._consumer.stop()  # noqa: SLF001
        raise
    catalogue.follower = follower
    return catalogue


async def follow_catalogue(catalogue: Catalogue, service: Service) -> None:
    """The last step of a service's ``build``: health per use case, one log line of what
    the service knows, and the follower in the background (its listeners are registered
    by now, so no change is missed)."""
    catalogue.report_to(service.server.report_health)
    await catalogue.report_health()
    if catalogue.usecases:
        log.info("this service knows %s", catalogue.describe())
    else:
        log.warning("this service knows %s", catalogue.describe())
    follower = catalogue.follower
    if isinstance(follower, CatalogueFollower):
        service.spawn("usecase-catalogue", follower.run(), stop=follower.stop)


__all__ = ["CatalogueFollower", "entry_of", "follow_catalogue", "load_catalogue"]
