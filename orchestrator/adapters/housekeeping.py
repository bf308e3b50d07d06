"""The webhook adapter's periodic upkeep: forgetting ids after ``--dedup-window`` and measuring
how far each lane is behind. :mod:`orchestrator.adapters.webhook` runs them every minute and
every 5 seconds."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from orchestrator.adapters.dedup import DedupStore
from orchestrator.adapters.lanes import Lane
from orchestrator.adapters.metrics import AdapterMetrics
from orchestrator.kafkaio.service import observe_lag as observe_lag_of
from orchestrator.kafkaio.service import wall_ms


async def prune(store: DedupStore, metrics: AdapterMetrics) -> None:
    """Delete every id past the window, in chunks, letting the lanes run between them."""
    while True:
        deleted = store.prune(wall_ms())
        metrics.pruned.inc(deleted)
        if deleted < 10_000:
            return
        await asyncio.sleep(0)


async def observe_lag(consumer: AIOKafkaConsumer, lanes: dict[TopicPartition, Lane], metrics: AdapterMetrics) -> None:
    """Records not yet committed, per assigned partition: its end minus the offset its lane
    commits next. A partition that has returned no record since it was assigned has no lane: once
    a fetch has answered for it (its end is known) nothing of it is left behind, so it shows 0."""

    def done(tp: TopicPartition) -> int | None:
        lane = lanes.get(tp)
        return lane.advance() if lane is not None else consumer.highwater(tp)

    observe_lag_of(consumer, metrics.lag, done, sorted(consumer.assignment()))
