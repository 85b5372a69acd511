"""Consumer-group lag per topic, as a metric: how far behind each consumer group reads.

The lag of a group on a partition is the partition's end (its last stable offset: the
consumers read committed) less the group's committed offset; ``aif.bus.consumer.lag``
(Prometheus ``aif_bus_consumer_lag{consumer_group,topic}``) is its sum over the topic's
partitions. It is measured from outside the consumer, the way Kafka's own
``kafka-consumer-groups --describe`` does (the group's committed offsets from its
coordinator, the ends from the partitions' leaders), so one exporter serves aiokafka
consumers and faust's alike; each service runs one :class:`ConsumerLag` per group it
consumes in. Partitions the group has never committed are not counted.

The gauge reads the last refresh (every ``interval_s``): a scrape never waits on Kafka.
A failed refresh keeps the previous figures and is logged once; it never touches the
consumer itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from libs.bus.security import KafkaSecurity

log = logging.getLogger(__name__)
INTERVAL_S = 10.0

_live: weakref.WeakSet[ConsumerLag] = weakref.WeakSet()


def _observe(_: CallbackOptions) -> list[Observation]:
    return [
        Observation(value, {"consumer.group": lag.group, "topic": topic})
        for lag in list(_live)
        for topic, value in dict(lag.by_topic).items()
    ]


metrics.get_meter("aifactory.bus").create_observable_gauge(
    "aif.bus.consumer.lag",
    callbacks=[_observe],
    unit="{message}",
    description="Messages a consumer group has still to read (end offset less committed offset), per topic",
)


class Progress:
    """Whether a consumer group is stuck: it has records to read, and in every measurement
    for ``stall_after_s`` its committed offsets have not moved.

    A group that keeps up commits as it goes (faust every commit interval, aiokafka per
    batch), so unmoved offsets with records waiting mean a stream that no longer
    processes: a crashed agent, a write that never returns, a wedged rebalance. A failed
    measurement (the broker away) restarts the clock: a stall is called on evidence only.
    """

    def __init__(self, stall_after_s: float) -> None:
        self.stall_after_s = stall_after_s
        self._offsets: dict[TopicPartition, int] | None = None
        self._lag = 0
        # Lag at these offsets known to hold no record (see settled).
        self._empty_lag = 0
        # When records were first seen waiting behind the current offsets; None: none wait.
        self._since: float | None = None

    def observe(self, committed: Mapping[TopicPartition, int], lag: int, now: float) -> None:
        self._lag = lag
        if committed != self._offsets:
            self._offsets, self._empty_lag = dict(committed), 0
            self._since = now if lag > 0 else None
        elif lag <= self._empty_lag:
            self._since = None
        elif self._since is None:
            self._since = now

    def lost(self) -> None:
        self._offsets, self._since, self._empty_lag = None, None, 0

    @property
    def offsets(self) -> dict[TopicPartition, int]:
        """The committed offsets last observed."""
        return dict(self._offsets or {})

    def settled(self) -> None:
        """The lag behind these offsets holds no record (:meth:`ConsumerLag.readable` found
        none: commit markers, aborted transactions): only a bigger lag is waiting records."""
        self._empty_lag, self._since = self._lag, None

    def stalled_for(self, now: float, after_s: float | None = None) -> float | None:
        """Seconds the group has been stuck, once that is at least ``after_s`` (default
        ``stall_after_s``); else None."""
        limit = self.stall_after_s if after_s is None else after_s
        if self._since is None or now - self._since < limit:
            return None
        return now - self._since


class ConsumerLag:
    """Measures group ``group``'s lag on ``topics`` (None: every topic it has committed on).

    Connects as ``security`` says, or with ``kafka_options`` (aiokafka client keywords).
    ``from_start``: partitions of ``topics`` the group has never committed count from their
    log start, as a group that reads from the earliest offset sees them (a stream stuck
    before its first commit is then not invisible). ``progress`` is fed every measurement:
    of the partitions ``owned`` returns (this member's assignment: in a group of several
    instances, another one's stuck partitions are not this one's stall, nor do its moving
    offsets hide this one's), or of all of them while it returns none or is not given.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        group: str,
        security: KafkaSecurity | None = None,
        *,
        topics: Iterable[str] | None = None,
        interval_s: float = INTERVAL_S,
        kafka_options: Mapping[str, Any] | None = None,
        from_start: bool = False,
        progress: Progress | None = None,
        owned: Callable[[], Iterable[TopicPartition]] | None = None,
    ) -> None:
        self.group = group
        self._owned = owned
        self.by_topic: dict[str, int] = {}
        self.progress = progress
        self._from_start = from_start and topics is not None
        # Partitions of each of ``topics`` (for from_start), described once.
        self._partitions: dict[str, list[int]] = {}
        self._bootstrap = bootstrap_servers
        self._kwargs = security.client_kwargs() if security else dict(kafka_options or {})
        self._topics = None if topics is None else frozenset(topics)
        self._interval = interval_s
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._failing = False
        # One refresh at a time: the loop's and a stall check's share the clients.
        self._refreshing = asyncio.Lock()

    async def refresh(self) -> dict[str, int]:
        """Measure now; returns (and keeps, for the gauge) the lag per topic."""
        async with self._refreshing:
            return await self._refresh()

    async def _refresh(self) -> dict[str, int]:
        if self._admin is None or self._consumer is None:
            kwargs = self._kwargs
            admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, **kwargs)
            # No group: it only asks the partitions' leaders for their ends.
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap, group_id=None, isolation_level="read_committed", **kwargs
            )
            await admin.start()
            try:
                await consumer.start()
            except BaseException:
                await admin.close()
                raise
            self._admin, self._consumer = admin, consumer
        committed = await self._admin.list_consumer_group_offsets(self.group)
        positions: dict[TopicPartition, int] = {
            tp: meta.offset
            for tp, meta in committed.items()
            if meta.offset >= 0 and (self._topics is None or tp.topic in self._topics)
        }
        if self._from_start and self._topics:
            unknown = sorted(self._topics - set(self._partitions))
            if unknown:
                for t in await self._admin.describe_topics(unknown):
                    if not t.get("error_code") and t["partitions"]:
                        self._partitions[t["topic"]] = [p["partition"] for p in t["partitions"]]
            unread = [
                TopicPartition(topic, p)
                for topic, numbers in self._partitions.items()
                for p in numbers
                if TopicPartition(topic, p) not in positions
            ]
            if unread:
                positions.update(await self._consumer.beginning_offsets(unread))
        ends = await self._consumer.end_offsets(list(positions)) if positions else {}
        behind = {tp: max(0, ends.get(tp, offset) - offset) for tp, offset in positions.items()}
        by_topic: dict[str, int] = {}
        for tp, n in behind.items():
            by_topic[tp.topic] = by_topic.get(tp.topic, 0) + n
        self.by_topic = by_topic
        if self.progress is not None:
            mine = {TopicPartition(tp.topic, tp.partition) for tp in self._owned()} if self._owned else set()
            watched = {tp: o for tp, o in positions.items() if tp in mine} or positions
            self.progress.observe(watched, sum(behind[tp] for tp in watched), time.monotonic())
        return by_topic

    def set_topics(self, topics: Iterable[str] | None) -> None:
        """Measure these topics from the next refresh on (a consumer that subscribes anew:
        a topic it left is not its lag, however long its records wait)."""
        self._topics = None if topics is None else frozenset(topics)

    async def stalled(self, limit_s: float | None = None) -> str | None:
        """Why the group counts as stalled (see :class:`Progress`; ``limit_s`` defaults to its
        ``stall_after_s``), or None. Unmoved offsets are confirmed by reading behind them
        (:meth:`readable`) before they count; a failed check is no evidence."""
        progress = self.progress
        if progress is None:
            return None
        limit = progress.stall_after_s if limit_s is None else limit_s
        if not limit or progress.stalled_for(time.monotonic(), limit) is None:
            return None
        try:
            # The last refresh may be up to interval_s old: measure again, so that offsets
            # committed since then count before a stall is called.
            await asyncio.wait_for(self.refresh(), 15)
            stuck = progress.stalled_for(time.monotonic(), limit)
            if stuck is None:
                return None
            waiting = await asyncio.wait_for(self.readable(progress.offsets), 15)
        except Exception as exc:  # noqa: BLE001 - unknown is not evidence: judge again later
            log.warning("could not tell whether group %s is stalled: %r", self.group, exc)
            progress.lost()
            return None
        if not waiting:
            progress.settled()  # only markers or aborted records behind
            return None
        lagging = {topic: n for topic, n in self.by_topic.items() if n}
        return (
            f"records waiting ({lagging} offsets behind) and no offset committed "
            f"for {stuck:.0f}s (limit {limit:.0f}s)"
        )

    async def readable(self, offsets: Mapping[TopicPartition, int], timeout_s: float = 3.0) -> int:
        """Records a read_committed reader gets from ``offsets`` on, in one fetch (0: none).

        The lag counts offsets, and offsets are not all records: a transaction's commit
        marker takes one, an aborted transaction its records and its marker. A group that
        has read everything still lags by those, so a lag that does not move is only a
        stall if there is something to read behind it.
        """
        if not offsets:
            return 0
        # A consumer of its own (rarely needed): the gauge's keeps measuring meanwhile.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            **self._kwargs,
        )
        await consumer.start()
        try:
            consumer.assign(list(offsets))
            for tp, offset in offsets.items():
                consumer.seek(tp, offset)
            found = await consumer.getmany(timeout_ms=int(timeout_s * 1000))
            return sum(len(records) for records in found.values())
        finally:
            await consumer.stop()

    async def run(self) -> None:
        """Refresh every ``interval_s`` until cancelled."""
        _live.add(self)
        try:
            while True:
                try:
                    await self.refresh()
                    self._failing = False
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a metric must never stop a service
                    if self.progress is not None:
                        self.progress.lost()
                    if not self._failing:
                        log.warning("consumer lag of group %s not measured: %r", self.group, exc)
                    self._failing = True
                await asyncio.sleep(self._interval)
        finally:
            _live.discard(self)
            await self.close()

    async def close(self) -> None:
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()
