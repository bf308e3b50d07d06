"""The same decisions at any lag: a worker paused and killed mid-stream, or a cold worker draining a
backlog, decides exactly what ``simulate`` decides on the same lines (docs/journeys.md#time).

Three journeys race a timer against an event: a ``wait_for`` with a 6 s timeout, a 4 s wait with a
goal, a 3 s wait with re-entry refused. Half of the deciding events fall within 2 s of the due time
(none in the last 0.5 s before it: an event that reaches a caught-up worker after the timer it
precedes is late by the rule, and a producer may take that long); the others anywhere in the wait.
The worker's actions, suppressions and decisions, ids and content (not ``decided_at``, the worker's
clock), must be the simulator's, as sets: a replay after the kill may repeat a record, never change one.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from orchestrator.config import Settings, home_partition
from orchestrator.core import Engine, JourneySet, load_journey_dir, load_policies
from orchestrator.kafkaio.topics import ensure_topics
from orchestrator.simulate import Simulation
from tests.integration.harness import BOOTSTRAP, HERE, WorkerProcess

JOURNEYS = HERE / "journeys-lag"
POLICIES = HERE / "policies.yaml"
PARTITIONS = 4
CUSTOMERS = 240
SPAN_MS = 30_000                                  # entries spread over this long
# entry type, deciding type, the journey's wait (ms), the topic of what the journey sends
RACES = (("cart.updated", "order.completed", 6_000),
         ("trial.started", "plan.upgraded", 4_000),
         ("promo.viewed", "promo.viewed", 3_000))
OUTPUTS = ("actions.email", "actions.push", "actions.inapp", "suppressions", "decisions")


def schedule(start_ms: int, run: str, seed: int) -> list[dict[str, Any]]:
    """Every customer's two events, in ts order, then one event after every timer."""
    rng = random.Random(seed)
    events = []
    for i in range(CUSTOMERS):
        entry_type, deciding_type, wait = RACES[i % 3]
        cid = f"lag-{run}-{i}"
        enter = start_ms + rng.randrange(SPAN_MS)
        if i % 2:                                  # near the due time, outside the 0.5 s before it
            offset = rng.choice((rng.randrange(-2_000, -500), rng.randrange(1, 2_001)))
        else:
            offset = rng.randrange(-wait + 300, wait)
        for n, (etype, ts) in enumerate(((entry_type, enter), (deciding_type, enter + wait + offset))):
            events.append({"event_id": f"{cid}-{n}", "customer_id": cid, "type": etype, "ts": ts, "properties": {}})
    events.sort(key=lambda e: e["ts"])
    last = events[-1]["ts"] + 7_000                # after every timer: simulate's clock gets there too
    events.append({"event_id": f"end-{run}", "customer_id": f"lag-{run}-end", "type": "clock.passed",
                   "ts": last, "properties": {}})
    return events


def expected(events: list[dict[str, Any]], partitions: int | None = PARTITIONS) -> set[bytes]:
    """What ``simulate`` makes of ``events`` with the worker's partitions (``None``: one clock)."""
    policies = load_policies(str(POLICIES))
    journeys, problems = load_journey_dir(str(JOURNEYS), channels=policies.channels)
    assert not problems, problems
    place = None if partitions is None else home_partition({"ORCH_PARTITIONS": str(partitions)})
    sim = Simulation(Engine(JourneySet(journeys), policies), partition_of=place)
    return {canonical(r["topic"], r["value"]) for r in sim.run(orjson.dumps(e) for e in events)}


def canonical(suffix: str, value: dict[str, Any]) -> bytes:
    return orjson.dumps([suffix, {k: v for k, v in value.items() if k != "decided_at"}],
                        option=orjson.OPT_SORT_KEYS)


async def send(events: list[dict[str, Any]], topic: str, *, real_time: bool) -> None:
    """Produce keyed by customer_id; in real time, each event when the wall clock reaches its ts."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True)
    await producer.start()
    try:
        pending = []
        for e in events:
            if real_time:
                ahead = e["ts"] / 1000 - time.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            pending.append(await producer.send(topic, orjson.dumps(e), key=e["customer_id"].encode()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def outputs(w: WorkerProcess, want: set[bytes], timeout_s: float) -> set[bytes]:
    """The worker's output records, canonical, read until they include ``want`` or time is up."""
    consumer = AIOKafkaConsumer(*[w.topic(t) for t in OUTPUTS], bootstrap_servers=BOOTSTRAP,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got: set[bytes] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not got >= want:
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                suffix = tp.topic[len(w.prefix) + 1:]
                got.update(canonical(suffix, orjson.loads(m.value)) for m in msgs)
    finally:
        await consumer.stop()
    return got


def compare(got: set[bytes], want: set[bytes]) -> None:
    wrong, missing = sorted(got - want), sorted(want - got)
    assert not wrong and not missing, (
        f"{len(wrong)} records the simulator did not make, {len(missing)} it made that the worker did not; "
        f"first of each: {[r.decode() for r in wrong[:3]]} {[r.decode() for r in missing[:3]]}")


def restarted(w: WorkerProcess, tmp: Path) -> WorkerProcess:
    """A new process of the same worker: same prefix, group and data folder."""
    again = WorkerProcess(tmp, prefix=w.prefix, journeys=JOURNEYS, policies=POLICIES, partitions=PARTITIONS)
    again.data_dir = w.data_dir
    again.env = {**w.env, "ORCH_WEB_PORT": str(again.port)}
    return again.start()


async def test_a_worker_paused_and_killed_mid_stream_decides_what_simulate_decides(tmp_path):
    run = uuid.uuid4().hex[:8]
    w = WorkerProcess(tmp_path, journeys=JOURNEYS, policies=POLICIES, partitions=PARTITIONS).start()
    workers = [w]
    try:
        start = int(time.time() * 1000) + 2_000
        events = schedule(start, run, seed=21)
        want = expected(events)

        async def faults() -> None:
            await asyncio.sleep(max(0.0, start / 1000 + 8 - time.time()))
            w.proc.send_signal(signal.SIGSTOP)             # lag builds up for 12 s
            await asyncio.sleep(12)
            w.proc.send_signal(signal.SIGCONT)
            await asyncio.sleep(6)
            w.stop(signal.SIGKILL)                         # and a crash mid-stream
            workers.append(await asyncio.to_thread(restarted, w, tmp_path))

        await asyncio.gather(send(events, w.topic("events"), real_time=True), faults())
        compare(await outputs(w, want, timeout_s=120), want)
    finally:
        for each in workers:
            each.stop()


async def drained_as_simulated(tmp_path: Path, events: list[dict[str, Any]]) -> None:
    """A cold worker drains ``events`` (produced before it starts) and makes what simulate makes."""
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    policies = load_policies(str(POLICIES))
    await ensure_topics(Settings(bootstrap=BOOTSTRAP, topic_prefix=prefix, partitions=PARTITIONS), policies.channels)
    want = expected(events)
    await send(events, f"{prefix}.events", real_time=False)
    w = WorkerProcess(tmp_path, prefix=prefix, journeys=JOURNEYS, policies=POLICIES, partitions=PARTITIONS).start()
    try:
        compare(await outputs(w, want, timeout_s=120), want)
    finally:
        w.stop()


async def test_a_cold_worker_draining_a_backlog_decides_what_simulate_decides(tmp_path):
    run = uuid.uuid4().hex[:8]
    await drained_as_simulated(tmp_path, schedule(int(time.time() * 1000) - 60_000, run, seed=22))  # a minute ago


async def test_a_backlog_out_of_ts_order_across_partitions_is_decided_as_simulate_decides_it(tmp_path):
    """Each partition's lines in ts order, but one half of the partitions' lines written 8 s ahead
    of the other's: a line of one partition comes before earlier-dated lines of another. A worker's
    timers keep time per partition, so a later line of partition 1 does not fire partition 0's
    timers; simulate's did, with one clock for the file, until it kept time per partition too."""
    run = uuid.uuid4().hex[:8]
    place = home_partition({"ORCH_PARTITIONS": str(PARTITIONS)})
    events = schedule(int(time.time() * 1000) - 60_000, run, seed=23)
    events.sort(key=lambda e: e["ts"] - (8_000 if place(e["customer_id"]) % 2 else 0))
    assert expected(events) != expected(events, partitions=None), "the shuffle must matter to a one-clock simulation"
    await drained_as_simulated(tmp_path, events)
