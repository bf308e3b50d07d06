"""Step 7 of :mod:`orchestrator.adapters.webhook`: the cancels, read from every suppression.

A consumer of its own, outside the group, reads every partition of ``<prefix>.suppressions``
(committed records only: ``isolation_level="read_committed"``) and stores the cancelled action ids
with its read position in one atomic write
(:meth:`~orchestrator.adapters.dedup.DedupStore.add_cancels`). At start it first catches up (from
its stored position, or from one de-duplication window ago) and only then reports ``caught_up``,
before which the adapter delivers no action: so a suppression that reached its topic before the
adapter started wins over an action still in the backlog, in whichever order the two topics
received them.

While it runs, the adapter asks for a :meth:`Cancels.fence` each time it has read actions: one
ListOffsets request for the ends of ``<prefix>.suppressions`` as of that moment (for a
read_committed reader, the last stable offsets), done once this reader has read up to them. The
request goes over a client of its own: on the reader's connection it would queue behind the
reader's waiting fetch (up to half a second). Step 2
waits for its action's fence before it looks at the cancels (catch up, then decide), so a
suppression that reached its topic before the action was read wins even when this reader is
behind. Step 2 and step 3 read the stored cancels (:mod:`orchestrator.adapters.records`,
:mod:`orchestrator.adapters.delivery`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from orchestrator.adapters.dedup import DedupStore
from orchestrator.adapters.metrics import AdapterMetrics
from orchestrator.adapters.wire import parse_suppression
from orchestrator.config import Settings
from orchestrator.core.durations import format_duration_ms
from orchestrator.core.events import Rejection
from orchestrator.kafkaio.service import wall_ms

log = logging.getLogger("orchestrator.adapter")

# How long one read waits for records. A fetch that brings only a transaction marker moves the
# position without returning a record, so this is also how late such a move can be seen.
READ_WAIT_MS = 100


class Cancels:
    """The cancels reader (:meth:`run`) and the fences actions wait at (:meth:`fence`)."""

    def __init__(self, settings: Settings, topic: str, partitions: list[int], store: DedupStore,
                 metrics: AdapterMetrics, window_ms: int, caught_up: Callable[[], None]) -> None:
        self.settings, self.store, self.metrics = settings, store, metrics
        self.topic, self.window_ms = topic, window_ms
        self.caught_up = caught_up
        self.tps = [TopicPartition(topic, p) for p in partitions]
        self.consumer: AIOKafkaConsumer | None = None
        self.ends: AIOKafkaConsumer | None = None        # asks for end offsets only; fetches nothing
        self.read_to: dict[TopicPartition, int] = {}     # next offset this reader returns, per partition
        self._moved = asyncio.Event()                   # set (and replaced) whenever read_to moves
        self._fences: set[asyncio.Task] = set()

    async def run(self) -> None:
        """Read every partition until cancelled; call ``caught_up`` once, when every partition has
        been read to the end it had at start."""
        kw = self.settings.aiokafka_kwargs()
        consumer = self.consumer = AIOKafkaConsumer(**kw, enable_auto_commit=False, isolation_level="read_committed",
                                                    max_partition_fetch_bytes=1024 * 1024)
        self.ends = AIOKafkaConsumer(**kw, enable_auto_commit=False, isolation_level="read_committed")
        await consumer.start()
        try:
            await self.ends.start()
            ends, todo = await self._seek_start(consumer)
            if todo:
                log.info("reading up to %d suppressions for their cancels before delivering", todo)
            await self._note_positions()
            ready = False
            while True:
                batch = await consumer.getmany(timeout_ms=READ_WAIT_MS, max_records=5000)
                store_cancels(batch, self.store, self.metrics)
                await self._note_positions()
                if not ready and self._reached(ends):
                    ready = True
                    self.caught_up()
                    if todo:
                        log.info("cancels caught up")
        finally:
            for fence in list(self._fences):
                fence.cancel()
            await self.ends.stop()
            await consumer.stop()

    async def _seek_start(self, consumer: AIOKafkaConsumer) -> tuple[dict[TopicPartition, int], int]:
        """Seek every partition where reading starts; the ends as of now, and how many records lie between."""
        tps, store = self.tps, self.store
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        assert self.ends is not None
        ends = await self.ends.end_offsets(tps)
        stored = store.positions()
        if any(stored.get(tp.partition, 0) > ends[tp] for tp in tps):
            log.warning("%s restarted its offsets (recreated?); reading the cancels of the last %s again",
                        self.topic, format_duration_ms(self.window_ms))
            store.forget_positions()
            stored = {}
        fresh = [tp for tp in tps if tp.partition not in stored]
        since = max(0, wall_ms() - self.window_ms)
        found = await consumer.offsets_for_times({tp: since for tp in fresh}) if fresh else {}
        todo = 0
        for tp in tps:
            if tp.partition in stored:
                start = max(stored[tp.partition], begins[tp])
            else:
                hit = found.get(tp)
                start = hit.offset if hit is not None else ends[tp]
            consumer.seek(tp, start)
            todo += max(0, ends[tp] - start)
        return ends, todo

    async def _note_positions(self) -> None:
        """Publish how far this reader has read (every record before it has its cancels stored)."""
        consumer = self.consumer
        assert consumer is not None
        moved = False
        for tp in self.tps:
            position = await consumer.position(tp)
            if position != self.read_to.get(tp):
                self.read_to[tp] = position
                moved = True
        if moved:
            self._moved.set()
            self._moved = asyncio.Event()

    def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        return all(self.read_to.get(tp, -1) >= end for tp, end in ends.items())

    def fence(self) -> asyncio.Future:
        """Done once this reader has read ``<prefix>.suppressions`` up to its ends as of now (one
        ListOffsets request); fails if Kafka does not answer it."""
        task = asyncio.ensure_future(self._catch_up_to_now())
        self._fences.add(task)
        task.add_done_callback(self._fence_done)
        return task

    def _fence_done(self, task: asyncio.Task) -> None:
        self._fences.discard(task)
        if not task.cancelled():
            task.exception()          # retrieved here; the actions waiting for it raise it themselves

    async def _catch_up_to_now(self) -> None:
        assert self.ends is not None, "the cancels reader has not started"
        ends = await self.ends.end_offsets(self.tps)
        while not self._reached(ends):
            await self._moved.wait()


def store_cancels(batch: dict[TopicPartition, list[Any]], store: DedupStore, metrics: AdapterMetrics) -> None:
    """Store the cancels of one fetched batch, with the position after it, in one write."""
    if not batch:
        return
    ids: list[str] = []
    positions: dict[int, int] = {}
    for tp, msgs in batch.items():
        for msg in msgs:
            sup = parse_suppression(msg.value)
            if isinstance(sup, Rejection):
                metrics.suppressions_read.labels("invalid").inc()
                log.warning("%s partition %d offset %d is not a suppression (%s); no cancels taken from it",
                            msg.topic, msg.partition, msg.offset, sup.detail)
                continue
            metrics.suppressions_read.labels("valid").inc()
            ids.extend(sup.get("cancels", []))
        if msgs:
            positions[tp.partition] = msgs[-1].offset + 1
    metrics.cancels.inc(store.add_cancels(ids, wall_ms(), positions))
