"""Timers: waits, ``wait_until``, ``wait_for`` timeouts, quiet-hours and window deferrals and journey
deadlines, as wake-up calls.

Each partition's RocksDB keeps a timer index (``t`` + due ms + customer id, see
:mod:`orchestrator.runtime.store`) in due order. Every ``SCAN_INTERVAL_S`` the scanner sends a
*tick* for each timer due by its partition's limit (:mod:`orchestrator.runtime.eventtime`: the
partition's input time, or the wall clock while everything it holds is decided) to the customer's
partition of the internal topic; the batch path (:mod:`orchestrator.runtime.batch`) hands the tick
to the engine, which fires what the customer's state says is due by that limit, each timer at its
due time. A tick is only a wake-up call, so a repeated or early tick fires nothing twice or early.
A tick that comes late changes no decision either: before any later event of the customer, the
engine fires the timer itself, at its due time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from orchestrator.kafkaio.service import wall_ms
from orchestrator.observability.metrics import Metrics
from orchestrator.runtime.eventtime import Clocks
from orchestrator.runtime.store import Stores, split_timer_key

TICK = b"T"                       # internal-topic value of a timer wake-up: b"T" + due ms (8 bytes)
SCAN_INTERVAL_S = 0.2
INFLIGHT_RETRY_S = 30.0
FULL_SCAN_EVERY_S = 10.0
MAX_TICKS_PER_SCAN = 5000


def tick(due: bytes) -> bytes:
    """The internal-topic value that wakes a customer whose timer is due at ``due`` (8 bytes)."""
    return TICK + due


def tick_due(value: object) -> bytes | None:
    """The due time (8 bytes) of a tick, or ``None`` for any other internal-topic value: a re-keyed
    event is msgpack (an array, never the byte ``T``), or already decoded (not bytes at all)."""
    return value[1:9] if isinstance(value, bytes) and value[:1] == TICK else None


class TimerScanner:
    """Finds due timers on this worker's partitions and sends their ticks."""

    def __init__(self, stores: Stores, producer: AIOKafkaProducer, keyed_topic: str, metrics: Metrics,
                 owned: Callable[[], set[int]], clocks: Clocks) -> None:
        self.stores, self.producer, self.keyed_topic, self.metrics = stores, producer, keyed_topic, metrics
        self.owned, self.clocks = owned, clocks
        self._inflight: dict[bytes, float] = {}     # timer key -> when its tick was sent (monotonic)
        self._cursor: dict[int, bytes] = {}          # partition -> last timer key ticked
        self._full_scan_at = 0.0

    def reset(self) -> None:
        """Partitions moved: forget ticks in flight and cursors (the next scan is a full one)."""
        self._inflight.clear()
        self._cursor.clear()

    def rewind(self, partition: int, timer_key: bytes) -> None:
        """A timer was indexed at ``timer_key``: the next scan of its partition must not start after it
        (in event time a timer may be due before one already ticked: a wait of a few seconds started
        at an event older than the partition's input time)."""
        cursor = self._cursor.get(partition)
        if cursor is not None and timer_key <= cursor:
            del self._cursor[partition]

    def done(self, timer_keys: list[bytes]) -> None:
        """Ticks whose batch is committed: their timers fired (or moved)."""
        for k in timer_keys:
            self._inflight.pop(k, None)

    async def scan(self) -> None:
        """Send a tick to the customer's partition for every timer of our partitions due by the
        partition's limit.

        The index is in due order, so the due ones come first. Between full scans, each partition
        resumes after the last key it ticked; a timer indexed behind that cursor resets it
        (:meth:`rewind`). The periodic full scan re-sends ticks still unanswered after
        ``INFLIGHT_RETRY_S`` (and covers a wall clock that stepped back).
        """
        now = wall_ms()
        mono = time.monotonic()
        pending = 0
        full = mono >= self._full_scan_at
        if full:
            self._full_scan_at = mono + FULL_SCAN_EVERY_S
            self._cursor.clear()
        ticks: list[tuple[int, bytes]] = []
        # Collect first, without awaiting: no RocksDB iterator lives across a rebalance.
        for partition in sorted(self.owned()):
            limit = self.clocks.limit(partition, now)
            for k in self.stores.get(partition).due(limit, self._cursor.get(partition)):
                pending += 1
                self._cursor[partition] = k
                flight = self._inflight.get(k)
                if flight is None or mono - flight > INFLIGHT_RETRY_S:
                    self._inflight[k] = mono
                    ticks.append((partition, k))
                    if len(ticks) >= MAX_TICKS_PER_SCAN:
                        break
            if len(ticks) >= MAX_TICKS_PER_SCAN:
                break
        if full:                       # incremental scans only see what is past their cursor
            self.metrics.timers_due.set(pending)   # at least this many if the scan stopped early
        for partition, k in ticks:
            # Not part of a batch: a lost tick is sent again by a later full scan.
            due, customer = split_timer_key(k)
            await self.producer.send(self.keyed_topic, value=tick(due), key=customer, partition=partition)

    async def count(self) -> None:
        """Pending timers on this worker's partitions (a metric; scans keys only)."""
        count = 0
        for partition in sorted(self.owned()):
            count += self.stores.get(partition).count_timers()
            await asyncio.sleep(0)
        self.metrics.timers_pending.set(count)
