"""Exactly-once (ORCH_PROCESSING_GUARANTEE=exactly-once) on a real broker: a reader that reads committed
records sees every output once, after a SIGKILL mid-drain, and the same outputs as ``simulate``."""

from __future__ import annotations

import asyncio
import collections
import signal
import time
import uuid

import orjson

from orchestrator.config import Settings
from orchestrator.core import load_policies
from orchestrator.kafkaio.topics import ensure_topics
from tests.integration.harness import BOOTSTRAP, WorkerProcess, read_committed, total
from tests.integration.test_lag import JOURNEYS, OUTPUTS, PARTITIONS, POLICIES, canonical, expected, schedule, send

EXACTLY_ONCE = {"ORCH_PROCESSING_GUARANTEE": "exactly-once"}


async def committed_outputs(prefix: str, want: int, timeout_s: float) -> collections.Counter:
    """Every output record a reader that reads committed records sees (canonical, counted), until
    ``want`` or time is up."""
    return collections.Counter(await read_committed(
        [f"{prefix}.{t}" for t in OUTPUTS], want, timeout_s,
        lambda topic, m: canonical(topic[len(prefix) + 1:], orjson.loads(m.value))))


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
