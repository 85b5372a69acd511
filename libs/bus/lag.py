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
import weakref
from collections.abc import Iterable, Mapping
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


class ConsumerLag:
    """Measures group ``group``'s lag on ``topics`` (None: every topic it has committed on).

    Connects as ``security`` says, or with ``kafka_options`` (aiokafka client keywords)."""

    def __init__(
        self,
        bootstrap_servers: str,
        group: str,
        security: KafkaSecurity | None = None,
        *,
        topics: Iterable[str] | None = None,
        interval_s: float = INTERVAL_S,
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.group = group
        self.by_topic: dict[str, int] = {}
        self._bootstrap = bootstrap_servers
        self._kwargs = security.client_kwargs() if security else dict(kafka_options or {})
        self._topics = None if topics is None else frozenset(topics)
        self._interval = interval_s
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._failing = False

    async def refresh(self) -> dict[str, int]:
        """Measure now; returns (and keeps, for the gauge) the lag per topic."""
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
        ends = await self._consumer.end_offsets(list(positions)) if positions else {}
        by_topic: dict[str, int] = {}
        for tp, offset in positions.items():
            by_topic[tp.topic] = by_topic.get(tp.topic, 0) + max(0, ends.get(tp, offset) - offset)
        self.by_topic = by_topic
        return by_topic

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
