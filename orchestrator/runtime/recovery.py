"""Partition state from the changelog: restoring a partition before it is processed, and keeping
warm copies (standbys) of the partitions this worker may take over next.

Both resume from the changelog offset each partition's RocksDB holds
(:meth:`~orchestrator.runtime.store.PartitionStore.changelog_offset`); neither decides anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from orchestrator.observability.metrics import Metrics
from orchestrator.kafkaio.clients import read_to_end, seek_to_start
from orchestrator.runtime.store import Stores

log = logging.getLogger("orchestrator.worker")

RESTORE_BATCH = 10_000
STANDBY_BATCH = 2_000             # changelog records applied to warm copies at a time


async def restore(consumer: AIOKafkaConsumer, stores: Stores, topic: str, partitions: set[int],
                  metrics: Metrics) -> None:
    """Bring each partition's RocksDB up to the end of its changelog (``consumer`` is a free one)."""
    if not partitions:
        return
    m = metrics
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    ends = await consumer.end_offsets(tps)
    begins = await consumer.beginning_offsets(tps)
    todo: dict[TopicPartition, int] = {}
    for tp in tps:
        store = stores.get(tp.partition)
        done = store.changelog_offset()
        if done is not None and done + 1 > ends[tp]:
            # The changelog is behind what this database saw (topic recreated): start over.
            log.warning("partition %d: local state is ahead of its changelog; rebuilding it", tp.partition)
            store = stores.wipe(tp.partition)
            done = None
        start = begins[tp] if done is None else max(done + 1, begins[tp])
        if start < ends[tp]:
            todo[tp] = start
    if not todo:
        return
    remaining = sum(ends[tp] - start for tp, start in todo.items())
    m.in_recovery.set(1)
    m.recovery_remaining.set(remaining)
    log.info("restoring %d partitions from the changelog: up to %d records", len(todo), remaining)
    started = time.monotonic()
    try:
        async for tp, msgs in read_to_end(consumer, dict(todo), ends=ends, max_records=RESTORE_BATCH):
            stores.get(tp.partition).apply_changelog([(r.key, r.value) for r in msgs], msgs[-1].offset)
            remaining -= len(msgs)
            m.recovery_remaining.set(max(0, remaining))
    finally:
        consumer.unsubscribe()
        m.in_recovery.set(0)
        m.recovery_remaining.set(0)
    log.info("restored in %.1f s", time.monotonic() - started)


def standby_targets(replicas: int, partitions: int, owned: set[int]) -> set[int]:
    """Partitions to keep warm copies of: ``replicas`` x as many as this worker owns, the ones right
    after its own (the range assignor gives contiguous ranges, so with two workers each keeps the
    other's whole share warm)."""
    if replicas == 0 or not owned:
        return set()
    top = max(owned)
    others = sorted((p for p in range(partitions) if p not in owned), key=lambda p: (p - top) % partitions)
    return set(others[:replicas * len(owned)])


async def follow_standbys(consumer: AIOKafkaConsumer, stores: Stores, topic: str,
                          targets: Callable[[], set[int]], owned: Callable[[], set[int]],
                          lock: asyncio.Lock) -> None:
    """Warm copies: follow the changelogs of ``targets()`` forever, so a take-over only replays the
    last moments of the changelog (see :func:`restore`). Records are applied under ``lock`` (the
    worker's batch lock) and never to a partition in ``owned()``."""
    following: set[int] = set()
    while True:
        wanted = targets()
        if wanted != following:
            tps = [TopicPartition(topic, p) for p in sorted(wanted)]
            consumer.assign(tps)
            for tp in tps:
                done = stores.get(tp.partition).changelog_offset()
                if done is None:
                    await seek_to_start(consumer, [tp])
                else:
                    consumer.seek(tp, done + 1)
            following = wanted
        if not following:
            await asyncio.sleep(1.0)
            continue
        batch = await consumer.getmany(timeout_ms=1000, max_records=STANDBY_BATCH)
        if not batch:
            continue
        async with lock:                 # never while the partition is restored or active
            mine = owned()
            for tp, msgs in batch.items():
                if not msgs or tp.partition in mine or tp.partition not in following:
                    continue
                store = stores.get(tp.partition)
                done = store.changelog_offset()
                fresh = [(r.key, r.value) for r in msgs if done is None or r.offset > done]
                if fresh:
                    store.apply_changelog(fresh, msgs[-1].offset)
