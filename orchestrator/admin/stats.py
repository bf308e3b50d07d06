"""``orchestrator stats``: journey statistics computed from the decisions topic (all workers)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from orchestrator.config import Settings
from orchestrator.reports.stats import from_decisions
from orchestrator.observability.progress import ProgressLine
from orchestrator.kafkaio.clients import read_to_end, start_client


async def read_decisions(settings: Settings, *, deadline_s: float = 600.0, progress: Any = None) -> list[dict[str, Any]]:
    """Every decision on the topic, in per-partition order (a customer's decisions keep their order).
    The topic must exist (one sentence otherwise); nothing is created."""
    from orchestrator.admin.explain import NO_WORKER_YET
    from orchestrator.kafkaio.topics import require_topics
    topic = settings.topics.decisions
    parts = (await require_topics(settings, [topic], hint=NO_WORKER_YET))[topic]
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False, isolation_level="read_committed", auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await start_client(consumer, settings)
    out: list[dict[str, Any]] = []
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        total = sum(ends.values())
        async for _, msgs in read_to_end(consumer, dict.fromkeys(tps), ends=ends, deadline_s=deadline_s):
            out.extend(orjson.loads(m.value) for m in msgs)
            if progress is not None:
                progress(len(out), total)
    finally:
        await consumer.stop()
    return out


async def journey_stats(settings: Settings, *, progress: Any = None) -> list[dict[str, Any]]:
    return from_decisions(await read_decisions(settings, progress=progress))


def beside_shadow(decisions: list[dict[str, Any]], journey: str) -> tuple[list[dict[str, Any]], int | None, int | None]:
    """The decisions ``journeys diff --shadow`` compares, and the (shadow, live) versions they are of.

    The shadow side is the newest shadow version of ``journey``. The live side is the live version
    that ran beside it: the one its customers entered at the same moment (the same event enters
    both), else the live version most entered while the shadow ran; only its instances entered
    while the shadow ran count, so a version live before or after (a promotion) is not mixed in.
    Returns ``([], None, None)`` when the journey has no shadow decisions.
    """
    from collections import Counter

    from orchestrator.core.timeutil import parse_ts_ms

    mine = [d for d in decisions if d.get("journey") == journey]
    shadow_versions = {d.get("journey_version") for d in mine if d.get("shadow")} - {None}
    if not shadow_versions:
        return [], None, None
    version = max(shadow_versions)
    shadow = [d for d in mine if d.get("shadow") and d.get("journey_version") == version]
    times = [t for t in (parse_ts_ms(d.get("ts")) for d in shadow) if t is not None]
    first, last = (min(times), max(times)) if times else (0, 0)
    shadow_entries = {(d.get("customer_id"), d.get("ts")) for d in shadow if d.get("outcome") == "entered"}
    live_entries = [d for d in mine if not d.get("shadow") and d.get("outcome") == "entered"]
    paired = Counter(d.get("journey_version") for d in live_entries
                     if (d.get("customer_id"), d.get("ts")) in shadow_entries)
    if not paired:
        paired = Counter(d.get("journey_version") for d in live_entries
                         if first <= (parse_ts_ms(d.get("ts")) or -1) <= last)
    if not paired:
        return shadow, version, None
    live_version = paired.most_common(1)[0][0]
    since: dict[Any, int] = {}          # customer -> first live entry while the shadow ran
    for d in live_entries:
        ts = parse_ts_ms(d.get("ts"))
        if d.get("journey_version") == live_version and ts is not None and first <= ts <= last:
            since[d.get("customer_id")] = min(ts, since.get(d.get("customer_id"), ts))
    live = [d for d in mine if not d.get("shadow") and d.get("journey_version") == live_version
            and d.get("customer_id") in since and (parse_ts_ms(d.get("ts")) or -1) >= since[d.get("customer_id")]]
    return shadow + live, version, live_version


def run(args: argparse.Namespace) -> int:
    from orchestrator.reports.stats import render_table
    settings = Settings.from_env()
    line = ProgressLine(tty_only=True)
    reports = asyncio.run(journey_stats(settings, progress=lambda done, total: line.show(
        f"reading decisions: {done}/{total}")))
    line.clear()
    if args.journey:
        reports = [r for r in reports if r["journey"] == args.journey]
    if args.json:
        print(orjson.dumps(reports, option=orjson.OPT_INDENT_2).decode())
    elif reports:
        print(render_table(reports))
    else:
        print("no journey decisions yet")
    return 0
