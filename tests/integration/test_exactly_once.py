"""Exactly-once (ORCH_PROCESSING_GUARANTEE=exactly-once) on a real broker: a reader that reads committed
records sees every output once, after a SIGKILL mid-drain, and the same outputs as ``simulate``."""

from __future__ import annotations

import asyncio
import collections
import signal
import time
import uuid

import orjson
from aiokafka import AIOKafkaConsumer

from orchestrator.config import Settings
from orchestrator.core import load_policies
from orchestrator.kafkaio.topics import ensure_topics
from tests.integration.harness import BOOTSTRAP, WorkerProcess, total
from tests.integration.test_lag import JOURNEYS, OUTPUTS, PARTITIONS, POLICIES, canonical, expected, schedule, send

EXACTLY_ONCE = {"ORCH_PROCESSING_GUARANTEE": "exactly-once"}


async def committed_outputs(prefix: str, want: int, timeout_s: float) -> collections.Counter:
    """Every output record a read_committed reader sees (canonical, counted), until ``want`` or time is up."""
    consumer = AIOKafkaConsumer(*[f"{prefix}.{t}" for t in OUTPUTS], bootstrap_servers=BOOTSTRAP,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    got: collections.Counter = collections.Counter()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and sum(got.values()) < want:
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                suffix = tp.topic[len(prefix) + 1:]
                got.update(canonical(suffix, orjson.loads(m.value)) for m in msgs)
        # A moment more: a duplicate would arrive after the last expected record.
        for _ in range(4):
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                got.update(canonical(tp.topic[len(prefix) + 1:], orjson.loads(m.value)) for m in msgs)
    finally:
        await consumer.stop()
    return got


def worker(tmp_path, prefix: str, data_dir=None) -> WorkerProcess:
    w = WorkerProcess(tmp_path, prefix=prefix, journeys=JOURNEYS, policies=POLICIES, partitions=PARTITIONS,
                      extra_env=EXACTLY_ONCE)
    if data_dir is not None:
        w.data_dir = data_dir
        w.env = {**w.env, "ORCH_DATA_DIR": str(data_dir)}
    return w


async def test_a_sigkill_mid_drain_leaves_every_output_exactly_once_for_a_committed_reader(tmp_path):
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    await ensure_topics(Settings(bootstrap=BOOTSTRAP, topic_prefix=prefix, partitions=PARTITIONS),
                        load_policies(str(POLICIES)).channels)
    start = int(time.time() * 1000) - 60_000
    # Enough events that the drain takes a while: the kill comes with batches in flight.
    events = sorted((e for i in range(40) for e in schedule(start, f"{uuid.uuid4().hex[:6]}{i}", seed=25 + i)),
                    key=lambda e: e["ts"])
    want = collections.Counter(expected(events))          # each record once
    await send(events, f"{prefix}.events", real_time=False)
    first = worker(tmp_path, prefix).start()
    try:
        deadline = time.monotonic() + 60
        while total(first.metrics(), "orch_events_in_total") < len(events) // 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL          # mid-drain, transactions open
    finally:
        first.stop()
    second = worker(tmp_path, prefix, first.data_dir).start()
    try:
        got = await committed_outputs(prefix, sum(want.values()), timeout_s=180)
    finally:
        second.stop()
    duplicated = {r: n for r, n in got.items() if n > 1}
    assert not duplicated, f"{len(duplicated)} records seen more than once, e.g. {next(iter(duplicated)).decode()}"
    assert set(got) == set(want), (f"{len(set(got) - set(want))} not made by simulate, "
                                   f"{len(set(want) - set(got))} of simulate's missing")
