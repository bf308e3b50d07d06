"""When a partition's timers may fire: event time, as Kafka Streams' stream time does it.

The engine decides an event at its ``ts`` and a timer at its due time (docs/journeys.md#time),
and before an event it fires the customer's own timers due by then. What is left to the worker is
*when* to wake a customer whose timer is due while no event of theirs comes: never while an event
of that customer dated before the due time may still be unread, or the timer would be decided
before it. So a timer of partition *p* fires once its due time is at most the partition's
*limit*:

- the partition's *input time*: the latest ``ts`` decided from it (a lagging, restarted or cold
  worker fires timers as its input time passes them, exactly where ``simulate`` fires them); or
- while the worker has read everything the partition held, its wall clock: every
  ``SCAN_INTERVAL_S`` (see :mod:`~orchestrator.runtime.timers`) :meth:`Clocks.check` asks the broker
  for the end offsets of the events topic, noting the time *before* asking; if the consumer's
  position has reached them and everything it returned is decided, no event appended before that
  time is unread, and timers due ``GRACE_MS`` before it may fire (an event that reaches the broker later than that after a timer it precedes
  is *late*: the engine decides it after the timer, at the customer's time);
- never later than the wall clock: a producer whose clock runs ahead (up to the 5 minutes a
  ``future_timestamp`` dead letter allows) does not make other customers' timers fire early.

Only the events topic counts for the check: records of the internal topic are ticks (wake-ups) and
events that were not keyed by customer_id, re-keyed by whichever worker read them; their
customers' timers do not wait for them (docs/journeys.md#time says so: key events by customer_id).

Nothing here is durable: after a restart or a rebalance a partition's limit starts at 0 and rises
with the first check or the first events read, so a worker that restarts behind its input fires
nothing early.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from orchestrator.kafkaio.service import wall_ms

GRACE_MS = 200          # how long after its due time an event may reach the broker and still be on time


class Clocks:
    """Input time and caught-up time of each partition this worker decides."""

    def __init__(self, events_topic: str) -> None:
        self.events_topic = events_topic
        self.input_ms: dict[int, int] = {}        # partition -> latest event ts decided from it
        self.caught_up_ms: dict[int, int] = {}    # partition -> every event appended before it is decided
        self._epoch = 0                           # moves on every forget: a check in flight then counts for nothing

    def observe(self, partition: int, ts_ms: int) -> None:
        """An event dated ``ts_ms`` was read from ``partition``."""
        if ts_ms > self.input_ms.get(partition, 0):
            self.input_ms[partition] = ts_ms

    def limit(self, partition: int, now_ms: int) -> int:
        """Timers of ``partition`` due at or before this may fire now."""
        limit = max(self.input_ms.get(partition, 0), self.caught_up_ms.get(partition, 0) - GRACE_MS)
        return limit if limit < now_ms else now_ms

    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked or (re)assigned: what was known of them no longer holds."""
        self._epoch += 1
        for p in partitions:
            self.input_ms.pop(p, None)
            self.caught_up_ms.pop(p, None)

    async def check(self, consumer: AIOKafkaConsumer, partitions: set[int], *,
                    busy: Callable[[], bool] = lambda: False) -> None:
        """Which of ``partitions`` have every event decided that the broker held a moment ago: the
        consumer's position (past what it returned, and past transaction markers) has reached the end
        offsets asked for, and no records it returned wait to be decided (``busy``)."""
        if not partitions:
            return
        epoch = self._epoch
        asked_ms = wall_ms()                  # before asking: the answer is at least this fresh
        tps = [TopicPartition(self.events_topic, p) for p in partitions]
        ends = await consumer.end_offsets(tps)
        behind = set()
        assigned = consumer.assignment()
        for tp, end in ends.items():
            if tp not in assigned or await consumer.position(tp) < end:
                behind.add(tp.partition)
        if epoch != self._epoch or busy():
            return                                # partitions moved, or records are being decided
        for p in partitions - behind:
            if asked_ms > self.caught_up_ms.get(p, 0):
                self.caught_up_ms[p] = asked_ms
