"""Kafka I/O of the load benchmark: producing the backlog (aiokafka batches, or confluent-kafka
with its defaults), the paced producer, the sink that times outputs, the simulated channel adapter,
a consumer group's committed offsets, and what is read back from the engine's topics afterwards.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from benchmarks.common import MIB, POLL_S, BenchError, Progress, admin, bootstrap, make_producer, now_ms, partitions_of, \
    percentile, read_topics
from benchmarks.workload import encode, feedback_for

PRODUCERS = ("aiokafka", "confluent-default")
TICK = b"T"        # the worker's timer wake-ups also travel on its internal topic (b"T" + due ms)


class BatchSender:
    """Flat-out producing with ``create_batch``/``send_batch``: one batch builder per partition,
    keys partitioned like the Java client (murmur2), no per-message future."""

    def __init__(self, producer: Any, topic: str, partitions: int) -> None:
        self.producer, self.topic, self.partitions = producer, topic, partitions
        self.builders: dict[int, Any] = {}
        self.futures: list[asyncio.Future[Any]] = []
        self._part: dict[bytes, int] = {}
        self.sent = 0

    def partition(self, key: bytes) -> int:
        p = self._part.get(key)
        if p is None:
            from orchestrator.kafkaio.clients import partition_for
            p = self._part[key] = partition_for(key, self.partitions)
        return p

    async def add(self, key: bytes, value: bytes) -> None:
        p = self.partition(key)
        b = self.builders.get(p)
        if b is None:
            b = self.builders[p] = self.producer.create_batch()
        if b.append(key=key, value=value, timestamp=None) is None:
            self.futures.append(await self.producer.send_batch(b, self.topic, partition=p))
            b = self.builders[p] = self.producer.create_batch()
            b.append(key=key, value=value, timestamp=None)
        self.sent += 1
        if len(self.futures) > 64:
            done = [f for f in self.futures if f.done()]
            for f in done:
                f.result()
            self.futures = [f for f in self.futures if not f.done()]

    async def flush(self) -> None:
        for p, b in list(self.builders.items()):
            if b.record_count():
                self.futures.append(await self.producer.send_batch(b, self.topic, partition=p))
        self.builders.clear()
        if self.futures:
            await asyncio.gather(*self.futures)
        self.futures.clear()


def _produce_confluent(topic: str, events: list[dict[str, Any]], progress: Progress, label: str) -> None:
    """What most producers in the wild do: confluent-kafka (librdkafka) with its defaults, keyed by
    customer_id, so partitions come from ``consistent_random`` (CRC32), not Java's murmur2."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": bootstrap()})
    errors: list[Any] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    t0 = time.monotonic()
    for i, ev in enumerate(events):
        key, value = encode(ev, now_ms())
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:            # the local queue is full: let deliveries drain it
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
        if i % 20_000 == 0:
            progress.show(f"{label}: producing the backlog with confluent-kafka's defaults {i:,}/{len(events):,} "
                          f"({i / max(1e-6, time.monotonic() - t0):,.0f}/s)")
    left = producer.flush(120)
    if left or errors:
        first = errors[0] if errors else f"{left} messages still queued after 120 s"
        raise BenchError(f"producing the backlog with confluent-kafka failed: {first}")


async def produce_backlog(topic: str, partitions: int, events: list[dict[str, Any]], progress: Progress,
                          label: str, producer: str = "aiokafka") -> float:
    """Send every event flat out (``ts`` = send time). Returns the seconds it took.

    ``producer``: ``aiokafka`` (murmur2 partitions, like the Java client and the worker) or
    ``confluent-default`` (confluent-kafka's default partitioner)."""
    t0 = time.monotonic()
    if producer == "confluent-default":
        await asyncio.to_thread(_produce_confluent, topic, events, progress, label)
    else:
        client = make_producer(linger_ms=20)
        await client.start()
        try:
            sender = BatchSender(client, topic, partitions)
            for i, ev in enumerate(events):
                key, value = encode(ev, now_ms())
                await sender.add(key, value)
                if i % 20_000 == 0:
                    el = max(1e-6, time.monotonic() - t0)
                    progress.show(f"{label}: producing the backlog {i:,}/{len(events):,} ({i / el:,.0f}/s)")
            await sender.flush()
        finally:
            await client.stop()
    el = time.monotonic() - t0
    progress.done(f"{label}: produced the backlog {len(events):,} in {el:.1f}s ({len(events) / el:,.0f}/s, {producer})")
    return el


class OutputSink:
    """Reads the system's output topics from their end (when started) and records
    event-to-output latency = arrival (wall clock) - the event's ``ts`` (``event_ts`` of an action,
    ``ts`` of a passthrough copy). Optionally hands each record to ``on_record``."""

    def __init__(self, topics: list[str], *, on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.topics = topics
        self.on_record = on_record
        self.samples: list[tuple[int, int]] = []       # (event ts ms, latency ms)
        self.count = 0
        self.by_topic: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None
        self._stop = asyncio.Event()

    async def start(self, timeout_s: float = 60.0) -> None:
        from aiokafka import AIOKafkaConsumer
        c = self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(), enable_auto_commit=False, isolation_level="read_committed",
                                              auto_offset_reset="latest", fetch_max_wait_ms=50,
                                              max_partition_fetch_bytes=4 * MIB)
        await c.start()
        tps = await partitions_of(c, self.topics, timeout_s)
        c.assign(tps)
        await c.seek_to_end(*tps)
        for tp in tps:
            await c.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        from orchestrator.core.timeutil import parse_ts_ms
        c = self._consumer
        while not self._stop.is_set():
            batch = await c.getmany(timeout_ms=100, max_records=5000)
            arrived = now_ms()
            for tp, msgs in batch.items():
                for m in msgs:
                    self.count += 1
                    self.by_topic[tp.topic] += 1
                    try:
                        value = orjson.loads(m.value)
                    except orjson.JSONDecodeError:
                        continue
                    if not isinstance(value, dict):
                        continue
                    ts = parse_ts_ms(value.get("event_ts", value.get("ts")))
                    if ts is not None:
                        self.samples.append((ts, arrived - ts))
                    if self.on_record is not None:
                        self.on_record(value)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                self._task.cancel()
        if self._consumer is not None:
            await self._consumer.stop()


class Adapter:
    """The simulated channel adapter: each action read by the sink schedules its feedback
    (:func:`feedback_for`), sent back to the events topic when due with ``ts`` = send time."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer, self.topic = producer, topic
        self.heap: list[tuple[float, int, dict[str, Any]]] = []
        self.seq = 0
        self.sent = 0
        self.actions = 0
        self.enabled = True
        self._task: asyncio.Task[None] | None = None

    def on_action(self, action: dict[str, Any]) -> None:
        if not self.enabled or "action_id" not in action:
            return
        self.actions += 1
        base = time.monotonic()
        for delay, ev in feedback_for(action):
            self.seq += 1
            heapq.heappush(self.heap, (base + delay, self.seq, ev))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            while self.heap and self.heap[0][0] <= now:
                ev = heapq.heappop(self.heap)[2]
                key, value = encode(ev, now_ms())
                await self.producer.send(self.topic, value=value, key=key)
                self.sent += 1
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.enabled = False
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass


async def paced(producer: Any, topic: str, source: Callable[[], dict[str, Any] | None], *, rate: float,
                duration_s: float, extra: Callable[[], int] = lambda: 0,
                on_tick: Callable[[int, float], None] | None = None) -> int:
    """Send events from ``source`` at ``rate`` events/s (counting ``extra()`` - e.g. the adapter's
    feedback - against the budget) for ``duration_s``; ``rate <= 0``: flat out. Returns events sent."""
    start = time.monotonic()
    sent = 0
    futures: list[asyncio.Future[Any]] = []
    last_tick = start
    while True:
        now = time.monotonic()
        el = now - start
        if el >= duration_s:
            break
        budget = (rate * el - extra() - sent) if rate > 0 else 500
        n = 0
        while budget > 0 and n < 2000:
            ev = source()
            if ev is None:
                duration_s = 0
                break
            key, value = encode(ev, now_ms())
            futures.append(await producer.send(topic, value=value, key=key))
            sent += 1
            budget -= 1
            n += 1
        if len(futures) > 5000:
            for f in futures:
                if f.done():
                    f.result()
            futures = [f for f in futures if not f.done()]
        if on_tick is not None and now - last_tick >= POLL_S:
            on_tick(sent, el)
            last_tick = now
        await asyncio.sleep((0.005 if rate < 5000 else 0.002) if rate > 0 else 0)
    if futures:
        await asyncio.gather(*futures)
    return sent




async def output_times(topic: str, timeout_s: float = 60.0) -> list[float]:
    """Sorted record timestamps (s) of an output topic up to its current end: when each output was
    written (LogAppendTime), to the millisecond (a drain faster than the sampling is still measured
    exactly)."""
    out: list[float] = []
    await read_topics([topic], each=lambda m: out.append(m.timestamp / 1000), timeout_s=timeout_s)
    out.sort()
    return out


class GroupOffsets:
    """Samples a consumer group's committed offsets on one topic (summed over its partitions) in the
    background: the yardstick every system shares, whatever it writes."""

    def __init__(self, group: str, topic: str, partitions: int, interval_s: float = 0.25) -> None:
        self.group, self.topic, self.partitions, self.interval_s = group, topic, partitions, interval_s
        self.samples: list[tuple[float, float]] = []        # (wall time, committed)
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None

    async def open(self) -> None:
        self._client = admin()
        await self._client.start()

    async def start(self) -> None:
        """Open, then sample every ``interval_s`` until :meth:`stop`."""
        await self.open()
        self._task = asyncio.create_task(self._run())

    async def committed(self) -> float:
        from aiokafka import TopicPartition
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        offsets = await self._client.list_consumer_group_offsets(self.group, partitions=tps)
        return float(sum(o.offset for o in offsets.values() if o is not None and o.offset > 0))

    async def _run(self) -> None:
        while True:
            try:
                self.samples.append((time.time(), await self.committed()))
            except Exception:  # noqa: BLE001 - a missed sample only widens the window
                pass
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        """The last sample, then close."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None
        try:
            self.samples.append((time.time(), await self.committed()))
        except Exception:  # noqa: BLE001
            pass
        await self.close()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def record_bytes(m: Any) -> int:
    """What a record weighs on a topic, as counted here: key + value bytes (headers apart)."""
    return len(m.key or b"") + len(m.value or b"")


async def changelog_stats(topic: str, events: float, *, start: dict[Any, int] | None = None,
                          stop: dict[Any, int] | None = None) -> dict[str, Any]:
    """What the engine's state costs, read from its changelog topic after the run: each customer's
    last record (key ``c`` + customer, value = 8-byte due prefix + msgpack state; tombstones drop the
    customer), the journals (key ``j``: the outputs of a batch's inputs, kept until committed), and
    every record's bytes (key + value) per event decided. The topic is compacted, but nothing is
    compacted within a run (the active segment never is).

    With ``start`` and ``stop`` offsets (by partition), only the records appended between them: the
    customers whose state was written then, and ``events`` the events decided meanwhile (the soak's
    intervals)."""
    from orchestrator.runtime.store import DUE_LEN, JOURNAL, STATE
    last: dict[bytes, int | None] = {}
    counts = {"records": 0, "bytes": 0, "journal_records": 0, "journal_bytes": 0}

    def each(m: Any) -> None:
        size = record_bytes(m)
        counts["records"] += 1
        counts["bytes"] += size
        kind = (m.key or b"")[:1]
        if kind == STATE:
            last[m.key] = None if m.value is None else len(m.value) - DUE_LEN
        elif kind == JOURNAL:
            counts["journal_records"] += 1
            counts["journal_bytes"] += size

    await read_topics([topic], start=start, stop=stop, each=each, timeout_s=300)
    sizes = sorted(v for v in last.values() if v is not None)
    return {"topic": topic, "records": counts["records"], "bytes": counts["bytes"], "customers": len(sizes),
            "state_bytes_p50": percentile(sizes, 50), "state_bytes_p99": percentile(sizes, 99),
            "state_bytes_max": sizes[-1] if sizes else None,
            "state_bytes_mean": round(sum(sizes) / len(sizes), 1) if sizes else None,
            "events": int(events),
            "changelog_bytes_per_event": round(counts["bytes"] / events, 1) if events else None,
            "changelog_records_per_event": round(counts["records"] / events, 3) if events else None,
            "journal_records": counts["journal_records"],
            "journal_bytes_per_event": round(counts["journal_bytes"] / events, 1) if events else None}


async def topic_bytes(topic: str, *, start: dict[Any, int] | None = None,
                      stop: dict[Any, int] | None = None) -> dict[str, int]:
    """Records and bytes (key + value) of a topic, or of the slice between ``start`` and ``stop``."""
    counts = {"records": 0, "bytes": 0}

    def each(m: Any) -> None:
        counts["records"] += 1
        counts["bytes"] += record_bytes(m)

    await read_topics([topic], start=start, stop=stop, each=each, timeout_s=300)
    return counts


async def rekeyed(topic: str) -> dict[str, int]:
    """Records on the engine's internal re-keyed topic: events that arrived on a partition other
    than their customer's and took the extra produce + consume, apart from timer wake-ups."""
    counts: Counter[str] = Counter()
    await read_topics([topic], each=lambda m: counts.update(["timer" if (m.value or b"")[:1] == TICK else "event"]),
                      timeout_s=300)
    return {"rekeyed_events": counts["event"], "timer_wakeups": counts["timer"]}
