"""Step 7 of :mod:`orchestrator.adapters.webhook`: the cancels, read from every suppression.

A consumer of its own, outside the group, reads every partition of ``<prefix>.suppressions`` and
stores the cancelled action ids with its read position in one atomic write
(:meth:`~orchestrator.adapters.dedup.DedupStore.add_cancels`). At start it first catches up (from
its stored position, or from one de-duplication window ago) and only then reports ``caught_up``,
before which the adapter delivers no action: so a suppression that reached its topic before the
adapter started wins over an action still in the backlog, in whichever order the two topics
received them. Step 2 and step 3 read the stored cancels (:mod:`orchestrator.adapters.records`,
:mod:`orchestrator.adapters.delivery`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from orchestrator.adapters.dedup import DedupStore, now_ms
from orchestrator.adapters.metrics import AdapterMetrics
from orchestrator.adapters.wire import parse_suppression
from orchestrator.config import Settings
from orchestrator.core.durations import format_duration_ms
from orchestrator.core.events import Rejection

log = logging.getLogger("orchestrator.adapter")


async def follow_cancels(settings: Settings, topic: str, partitions: list[int], store: DedupStore,
                         metrics: AdapterMetrics, window_ms: int, caught_up: Callable[[], None]) -> None:
    """Read ``partitions`` of ``topic`` until cancelled; call ``caught_up`` once, when every
    partition has been read to the end it had at start."""
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False,
                                max_partition_fetch_bytes=1024 * 1024)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        stored = store.positions()
        if any(stored.get(tp.partition, 0) > ends[tp] for tp in tps):
            log.warning("%s restarted its offsets (recreated?); reading the cancels of the last %s again",
                        topic, format_duration_ms(window_ms))
            store.forget_positions()
            stored = {}
        fresh = [tp for tp in tps if tp.partition not in stored]
        since = max(0, now_ms() - window_ms)
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
        if todo:
            log.info("reading up to %d suppressions for their cancels before delivering", todo)
        ready = False
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            store_cancels(batch, store, metrics)
            if not ready:
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= ends[tp] for pos, tp in zip(positions, tps)):
                    ready = True
                    caught_up()
                    if todo:
                        log.info("cancels caught up")
    finally:
        await consumer.stop()


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
    metrics.cancels.inc(store.add_cancels(ids, now_ms(), positions))
