"""``orchestrator stats``: journey statistics computed from the decisions topic (all workers)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from orchestrator.config import Settings
from orchestrator.core.stats import from_decisions
from orchestrator.runtime.client import partitions_of, seek_to_start


async def read_decisions(settings: Settings, *, deadline_s: float = 600.0, progress: Any = None) -> list[dict[str, Any]]:
    """Every decision on the topic, in per-partition order (a customer's decisions keep their order)."""
    topic = settings.topic("decisions")
    parts = (await partitions_of(settings, [topic])).get(topic, [])
    if not parts:
        return []
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await seek_to_start(consumer, tps)
        total = sum(ends.values())
        deadline = time.monotonic() + deadline_s
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=10_000)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        out.append(orjson.loads(m.value))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if progress is not None:
                progress(len(out), total)
    finally:
        await consumer.stop()
    return out


async def journey_stats(settings: Settings, *, progress: Any = None) -> list[dict[str, Any]]:
    return from_decisions(await read_decisions(settings, progress=progress))
