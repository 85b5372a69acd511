"""The faust app class of the stream processor: faust with two corrections.

- faust configures ``isolation_level=read_committed`` only in its exactly-once mode
  (which has open bugs); in at-least-once mode it would read records of aborted or
  still-open Kafka transactions — and ingestion publishes records in transactions.
  This module's consumer thread sets the isolation level on the consumer faust builds.
- After a restart, faust's seek to the committed offsets races with the fetch loop and
  can skip records (see ``perform_seek`` below); the seek here runs with the flow stopped.

And one speed-up: faust hands each fetched message to its streams through
``wait_first(deliver(message), suspend_flow.wait())``, which starts four tasks and an
``asyncio.wait`` per message — a fifth of the service's CPU at a few thousand records/s.
When delivering cannot block (see ``wait_first`` below) the message is delivered directly.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitResults

# The code object of ``asyncio.Event.wait`` (faust's ``suspend_flow`` is an asyncio.Event):
# recognises the drain loop's ``suspend_flow.wait()``.
_EVENT_WAIT = asyncio.Event.wait.__code__


class _ReadCommittedThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # faust picks read_committed only in exactly-once mode; aiokafka reads this
        # attribute when the consumer starts, which is after this returns.
        consumer._isolation_level = "read_committed"
        return consumer


class _ReadCommittedConsumer(faust_aiokafka.Consumer):
    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        """faust's drain loop calls ``wait_first(deliver(message), suspend_flow.wait())`` so that a
        delivery blocked on a full stream buffer is abandoned when a rebalance suspends the flow.

        Delivery blocks only on suspended flow control, a producer buffer over its limit or
        a full stream buffer. When none holds, the delivery is awaited directly (it finishes
        without waiting): the same result without four tasks per message. Any other call, or
        any of those conditions, takes faust's path.
        """
        if timeout is None and len(coros) == 2 and self._delivers_now(coros[1]):
            deliver, suspended = coros
            suspended.close()  # never started: close it so it is not reported as never awaited
            result = await deliver
            return WaitResults([deliver], [result], False)
        return await super().wait_first(*coros, timeout=timeout)

    def _delivers_now(self, second: Any) -> bool:
        if not (isinstance(second, types.CoroutineType) and second.cr_code is _EVENT_WAIT):
            return False
        if self.suspend_flow.is_set() or self.should_stop or not self.app.flow_control.is_active():
            return False
        buffer = self.app.producer.buffer
        if buffer.size > buffer.max_messages:
            return False
        # faust's Conductor keeps its channels in ``_topics``, which its ConductorT interface lacks.
        return not any(channel.queue.full() for channel in self.app.topics._topics)  # type: ignore[attr-defined]

    def _new_consumer_thread(self) -> Any:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """Seek to the committed offsets with the message flow stopped.

        After table recovery faust resumes the stream partitions, then seeks them to the
        committed offsets, while messages already flow. A message the fetch loop hands
        over during the seek moves the loop's read offset past the seek, so messages
        fetched again from the committed offset look old and are dropped, and the offsets
        skipped count as a gap that may be committed (faust-streaming#596, #606): records
        lost. Stopping the flow first lets the loop finish the message in hand; the seek
        then wins, and what was handed over early is handed over again (a duplicate the
        stream recognises by record id).
        """
        resume = self.flow_active
        self.stop_flow()
        await self.wait_for_stopped_flow()
        await asyncio.sleep(0)
        try:
            await super().perform_seek()
        finally:
            if resume:
                self.resume_flow()


class _ReadCommittedTransport(faust_aiokafka.Transport):
    Consumer = _ReadCommittedConsumer


class FeatureApp(faust.App):
    # Called when an agent raises, instead of faust's default (which commits and lets the
    # agent's supervisor start a new actor): FeatureStream exits the process.
    on_agent_failure: Callable[[Any, BaseException], Awaitable[None]] | None = None

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        if self.on_agent_failure is None:
            await super()._on_agent_error(agent, exc)
        else:
            await self.on_agent_failure(agent, exc)

    def on_init_dependencies(self) -> Any:
        """faust's own dependencies, without its Monitor sensor.

        The Monitor keeps per-event statistics for faust's web views, which this service
        does not serve (``web_enabled=False``); its callbacks run on every message in and out.
        The service's own metrics are OpenTelemetry's.
        """
        services = super().on_init_dependencies()
        self.sensors.remove(self.monitor)
        return services

    def _new_transport(self) -> Any:
        return _ReadCommittedTransport(self.conf.broker_consumer, self)
