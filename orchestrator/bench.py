"""``orchestrator bench``: a load generator and a side-by-side throughput/latency benchmark.

Three commands (``main(argv)``; also ``python -m orchestrator.bench``):

``run`` (the default, what ``make bench`` runs)
    One benchmark run on this machine and broker, every system fed the same events:

    * **passthrough** - plain aiokafka consume -> produce, no logic (``benchmarks/passthrough.py``): the ceiling;
    * **naive_faust** - one Faust agent, one RocksDB table get + set per event, one output per event
      (``benchmarks/naive_faust.py``);
    * **engine** - ``python -m orchestrator worker`` with ``journeys/`` and ``policies.yaml``, a black box
      driven through its environment, its topics and ``/metrics``;
    * **pure_core** - the engine alone, in-process, no Kafka (``benchmarks/pure_core.py``);
    * **scale-out** - the engine with 1, 2 and 4 worker processes in one consumer group.

    Sustained throughput: a fixed backlog is produced *before* the system starts; the rate is the
    slope of its consumed count between 10 % and 90 % of the backlog (start-up, rebalance and tail
    excluded; a backlog drains only as fast as the system can go, so lag cannot be growing slower).
    Latency: afterwards, the same still-running system gets events at 50 % of the engine's sustained
    rate from a paced producer; event-to-action latency = arrival of the output on its topic (a
    consumer in this process, wall clock) minus the event's ``ts``. CPU = utime + stime of the system's
    processes (``/proc/<pid>/stat``) per 1,000 events; peak memory = VmHWM. Results:
    ``benchmarks/results/load.json``, ``load.md``, ``load.png``.

``load``
    Just the load generator against a running worker (``ORCH_TOPIC_PREFIX``, ``ORCH_BOOTSTRAP``):
    ``--rate N`` events/s (0: flat out) for ``--duration`` seconds or ``--events`` events, with the
    simulated channel adapter answering actions with feedback, and a progress line.

``core``
    Only the pure-core measurement (no Kafka).

The workload: synthetic shoppers with Zipf-like popularity (Zipf-Mandelbrot weights ``1/(rank+q)^s``
over ``--customers``), interleaved sessions (sign-up and profile for new customers, app opens,
product views, cart, purchase: view -> cart -> purchase funnels), profile updates, and feedback from a
simulated channel adapter (delivered / opened / clicked, per channel probabilities, delays of a few
seconds). Every random choice comes from ``--seed``, so every system gets byte-identical events (up
to the ``ts`` stamped at send time). In the backlog the adapter's feedback is predicted by running the
pure engine over the stream (action ids are deterministic), so the backlog already holds the
feedback the live adapter would have sent; in the latency phase the adapter runs live (closed loop).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import heapq
import importlib.util
import itertools
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from orchestrator.testing.childproc import ChildProcess
from orchestrator.testing.net import broker_reachable, free_port
from orchestrator.config import default_bootstrap as bootstrap
from orchestrator.observability.scrape import scrape_port, total  # noqa: F401 - re-exported

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
RESULTS = BENCH_DIR / "results"
MIB = 1024 * 1024
POLL_S = 0.2
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

EVENTS_IN = "orch_events_in_total{"
CHANNELS = ("email", "sms", "push", "inapp", "web", "ads")
SYSTEM_ORDER = ("passthrough", "naive_faust", "engine")


def now_ms() -> int:
    return time.time_ns() // 1_000_000




# ============================================================================ the workload
CATEGORIES = ("shoes", "bags", "jackets", "watches", "hats", "shirts", "toys", "books", "garden", "beauty")
TIMEZONES = ("Europe/Paris", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "UTC")
FIRST_NAMES = ("Ada", "Ben", "Chloe", "Dev", "Emma", "Farid", "Gita", "Hugo", "Ines", "Jon", "Kai", "Lena")
PLATFORMS = ("ios", "android", "web")

# channel -> (p delivered, p opened | delivered, p clicked | opened (or | delivered if never opened))
FEEDBACK_MODEL: dict[str, tuple[float, float, float]] = {
    "email": (0.97, 0.25, 0.20),
    "push": (0.92, 0.10, 0.30),
    "sms": (0.98, 0.00, 0.05),
    "inapp": (0.95, 0.30, 0.20),
    "web": (0.95, 0.00, 0.04),
    "ads": (0.90, 0.00, 0.01),
}
# Real adapters report over minutes to days; compressed to seconds so the loop closes within a run.
DELIVERED_DELAY_S = (0.2, 1.5)
OPENED_DELAY_S = (1.0, 8.0)
CLICKED_DELAY_S = (0.5, 4.0)
VIRTUAL_RATE = 2000.0            # events/s of the virtual clock used to place predicted feedback


class Shoppers:
    """Deterministic synthetic shoppers; :meth:`next` returns one event (a dict without ``ts``).

    ``sessions`` shopping sessions run at once, interleaved at random; a finished session is
    replaced by a new one of a customer drawn with Zipf-Mandelbrot popularity. A customer's first
    session may start with a sign-up and a profile; any session may start with a profile update
    (time zone, consent, tier) or an app open; then 1..12 product views (prices log-normal around
    60, a third of them 100 or more), then maybe a cart update, then maybe an order.
    """

    def __init__(self, *, seed: int = 42, customers: int = 200_000, zipf_s: float = 1.0, zipf_q: float = 20.0,
                 sessions: int = 1000, tag: str = "b") -> None:
        self.rng = random.Random(seed)
        self.customers = customers
        self.cum = list(itertools.accumulate((r + zipf_q) ** -zipf_s for r in range(1, customers + 1)))
        self.sessions = sessions
        self.tag = tag
        self.known: set[int] = set()
        self.active: dict[int, deque[tuple[str, dict[str, Any]]]] = {}
        self.order: list[int] = []
        self.n = 0
        self.types: Counter[str] = Counter()
        self.per_customer: Counter[int] = Counter()

    def _draw(self) -> int:
        x = self.rng.random() * self.cum[-1]
        return bisect.bisect_left(self.cum, x) + 1

    def _profile(self, rank: int) -> dict[str, Any]:
        r = random.Random(rank * 7919 + 1)
        return {"first_name": r.choice(FIRST_NAMES), "timezone": r.choice(TIMEZONES),
                "ltv_tier": r.choices(("bronze", "silver", "gold"), (70, 25, 5))[0],
                "consent": {"email": r.random() < 0.95, "sms": r.random() < 0.35, "push": r.random() < 0.8}}

    def _session(self, rank: int) -> deque[tuple[str, dict[str, Any]]]:
        rng = self.rng
        out: deque[tuple[str, dict[str, Any]]] = deque()
        if rank not in self.known:
            self.known.add(rank)
            if rng.random() < 0.6:
                out.append(("signup.completed", {"plan": rng.choice(("free", "free", "pro")),
                                                 "source": rng.choice(("ads", "organic", "referral"))}))
                out.append(("profile.updated", self._profile(rank)))
        elif rng.random() < 0.05:
            change = rng.choice(("ltv_tier", "consent", "timezone"))
            props = self._profile(rank)
            if change == "ltv_tier":
                props = {"ltv_tier": rng.choice(("bronze", "silver", "gold"))}
            elif change == "consent":
                props = {"consent": {**props["consent"], "sms": rng.random() < 0.5}}
            else:
                props = {"timezone": rng.choice(TIMEZONES)}
            out.append(("profile.updated", props))
        if rng.random() < 0.5:
            out.append(("app.opened", {"platform": rng.choice(PLATFORMS)}))
        views = 1
        while views < 12 and rng.random() < 0.65:
            views += 1
        prices = []
        for _ in range(views):
            price = round(math.exp(rng.gauss(4.1, 0.8)), 2)
            prices.append(price)
            out.append(("product.viewed", {"product_id": f"p-{rng.randrange(20_000)}",
                                           "category": rng.choice(CATEGORIES), "price": price}))
        if rng.random() < 0.3:
            items = rng.randint(1, min(3, len(prices)))
            value = round(sum(rng.sample(prices, items)), 2)
            out.append(("cart.updated", {"value": value, "items": items, "currency": "EUR"}))
            if rng.random() < 0.4:
                out.append(("order.completed", {"order_id": f"o-{self.tag}-{self.n}-{rank}", "total": value,
                                                "currency": "EUR"}))
        return out

    def next(self) -> dict[str, Any]:
        while len(self.order) < self.sessions:
            for _ in range(5):
                rank = self._draw()
                if rank not in self.active:
                    break
            else:
                continue
            self.active[rank] = self._session(rank)
            self.order.append(rank)
        i = self.rng.randrange(len(self.order))
        rank = self.order[i]
        queue = self.active[rank]
        etype, props = queue.popleft()
        if not queue:
            del self.active[rank]
            self.order[i] = self.order[-1]
            self.order.pop()
        self.n += 1
        self.types[etype] += 1
        self.per_customer[rank] += 1
        return {"event_id": f"e-{self.tag}-{self.n}", "customer_id": f"c-{rank}", "type": etype, "properties": props}


def feedback_for(action: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
    """What the simulated channel adapter reports for one action: ``[(delay s, event without ts)]``.

    Deterministic per ``action_id`` (so a re-delivered action yields the same feedback event ids,
    which the engine de-duplicates)."""
    aid, channel, cid = action.get("action_id"), action.get("channel"), action.get("customer_id")
    if not isinstance(aid, str) or not isinstance(channel, str) or not isinstance(cid, str):
        return []
    p_delivered, p_opened, p_clicked = FEEDBACK_MODEL.get(channel, (0.9, 0.0, 0.0))
    r = random.Random(aid)
    out: list[tuple[float, dict[str, Any]]] = []

    def make(kind: str, delay: float) -> None:
        out.append((delay, {"event_id": f"fb-{aid}-{kind}", "customer_id": cid, "type": f"message.{kind}",
                            "properties": {"action_id": aid, "channel": channel}}))

    if r.random() >= p_delivered:
        return out
    t = r.uniform(*DELIVERED_DELAY_S)
    make("delivered", t)
    if p_opened and r.random() < p_opened:
        t += r.uniform(*OPENED_DELAY_S)
        make("opened", t)
        if r.random() < p_clicked:
            make("clicked", t + r.uniform(*CLICKED_DELAY_S))
    elif not p_opened and r.random() < p_clicked:
        make("clicked", t + r.uniform(*CLICKED_DELAY_S))
    return out


def load_engine(journeys: str | Path, policies: str | Path):  # -> Engine
    from orchestrator.core import Engine, JourneySet, load_journey_dir, load_policies
    pol = load_policies(str(policies))
    loaded, problems = load_journey_dir(str(journeys), channels=pol.channels)
    if problems:
        raise RuntimeError("journeys refused: " + "; ".join(str(p) for p in problems))
    return Engine(JourneySet(loaded), pol)


def build_backlog(shoppers: Shoppers, n: int, engine: Any, *, start_ms: int | None = None,
                  virtual_rate: float = VIRTUAL_RATE) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``n`` events: the shoppers' stream with the adapter's feedback already woven in.

    The pure engine runs over the stream on a virtual clock (``virtual_rate`` events/s); each action
    it emits gets the adapter's feedback inserted where its delay puts it. Returns the events (dicts
    without ``ts``) and statistics of the stream.
    """
    from orchestrator.core.events import Event
    start = start_ms if start_ms is not None else now_ms()
    step = 1000.0 / virtual_rate
    heap: list[tuple[float, int, dict[str, Any]]] = []
    states: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    seq = 0
    outputs: Counter[str] = Counter()
    entered = 0
    while len(events) < n:
        t = start + len(events) * step
        if heap and heap[0][0] <= t:
            ev = heapq.heappop(heap)[2]
        else:
            ev = shoppers.next()
        ts = int(t)
        cid = ev["customer_id"]
        result = engine.on_event(states.get(cid), Event(ev["event_id"], cid, ev["type"], ts, ev["properties"]), ts)
        if result.state is None:
            states.pop(cid, None)
        else:
            states[cid] = result.state
        entered += sum(1 for lc in result.lifecycle if lc.kind == "entered")
        for o in result.outputs:
            outputs[o.topic] += 1
            if o.topic.startswith("actions."):
                for delay, fb in feedback_for(o.value):
                    seq += 1
                    heapq.heappush(heap, (t + delay * 1000.0, seq, fb))
        events.append(ev)
    types = Counter(e["type"] for e in events)
    per_customer = Counter(e["customer_id"] for e in events)
    counts = sorted(per_customer.values(), reverse=True)
    top1 = max(1, len(counts) // 100)
    stats = {
        "events": len(events),
        "types": dict(types.most_common()),
        "feedback_share": round(sum(v for k, v in types.items() if k.startswith("message.")) / max(1, len(events)), 4),
        "distinct_customers": len(per_customer),
        "customer_population": shoppers.customers,
        "heaviest_customer_share": round(counts[0] / len(events), 4) if counts else 0,
        "top_1pct_customers_share": round(sum(counts[:top1]) / len(events), 4) if counts else 0,
        "predicted_outputs": dict(outputs.most_common()),
        "predicted_actions": sum(v for k, v in outputs.items() if k.startswith("actions.")),
        "predicted_journey_entries": entered,
        "mean_event_bytes": round(sum(len(orjson.dumps({**e, "ts": start})) for e in events[:5000])
                                  / max(1, min(5000, len(events))), 1),
    }
    return events, stats


class LazyEvents:
    """The continuation of a :class:`Shoppers` stream, made on demand and kept, so that every
    system that reads it from the start gets the same events."""

    def __init__(self, shoppers: Shoppers) -> None:
        self.shoppers = shoppers
        self.events: list[dict[str, Any]] = []

    def reader(self) -> Callable[[], dict[str, Any]]:
        i = 0

        def next_event() -> dict[str, Any]:
            nonlocal i
            if i >= len(self.events):
                self.events.append(self.shoppers.next())
            ev = self.events[i]
            i += 1
            return ev
        return next_event


def encode(event: dict[str, Any], ts: int) -> tuple[bytes, bytes]:
    event["ts"] = ts
    return event["customer_id"].encode(), orjson.dumps(event)


# ============================================================================ small helpers
def bucket_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """p50/p95/p99 upper bounds (seconds) from the growth of a Prometheus histogram."""
    les = sorted(after)
    cum = [(le, after[le] - before.get(le, 0.0)) for le in les]
    n = cum[-1][1] if cum else 0.0
    out: dict[str, Any] = {"count": int(n)}
    for p in (50, 95, 99):
        out[f"p{p}_le_s"] = next((le for le, c in cum if n and c >= p / 100 * n), None)
    return out


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process (all its threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_mem(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if key in ("VmRSS", "VmHWM") and len(parts) == 2:
                    out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def host_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole host from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            parts = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return total - idle, total


def broker_pid() -> int | None:
    """The pid of the process listening on the bootstrap port, if it runs on this host (read-only:
    only for its CPU time)."""
    try:
        port = int(bootstrap().split(",")[0].rpartition(":")[2])
    except ValueError:
        return None
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rpartition(":")[2], 16) == port:
                        inodes.add(parts[9])
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{name}/fd"):
                try:
                    if os.readlink(f"/proc/{name}/fd/{fd}") in wanted:
                        return int(name)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def loadavg() -> str | None:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


scrape = scrape_port






class BenchError(RuntimeError):
    pass


class Progress:
    """One live status line on stderr (rewritten in place on a terminal, every 5 s otherwise)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._width = 0

    def show(self, text: str, *, force: bool = False) -> None:
        if self.tty:
            sys.stderr.write("\r" + text + " " * max(0, self._width - len(text)))
            sys.stderr.flush()
            self._width = len(text)
        elif force or time.monotonic() - self._last >= 5.0:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            self._last = time.monotonic()

    def done(self, text: str | None = None) -> None:
        if text is not None:
            self.show(text, force=True)
        if self.tty and self._width:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self._width = 0


def note(text: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


# ============================================================================ Kafka plumbing
async def create_topics(topics: dict[str, int], timeout_s: float = 60.0) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(), request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(t, num_partitions=p, replication_factor=1) for t, p in topics.items() if t not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        deadline = time.monotonic() + timeout_s
        while not set(topics) <= set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise BenchError(f"topics {sorted(topics)} not visible after {timeout_s:.0f}s")
            await asyncio.sleep(POLL_S)
    finally:
        await admin.close()


async def delete_prefix(prefix: str, timeout_s: float = 60.0) -> list[str]:
    """Delete this benchmark's topics (``<prefix>.*``, ``<prefix>-*``) and consumer groups, nothing else."""
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(), request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        ours = sorted(t for t in await admin.list_topics() if t.startswith((f"{prefix}.", f"{prefix}-")))
        if ours:
            await admin.delete_topics(ours, timeout_ms=int(timeout_s * 1000))
        try:  # best effort: aiokafka has no public call for it
            from aiokafka.protocol.admin import DeleteGroupsRequest
            groups = [g[0] for g in await admin.list_consumer_groups() if str(g[0]).startswith(f"{prefix}-")]
            for g in groups:
                await admin._send_request(DeleteGroupsRequest([g]), await admin.find_coordinator(g))
        except Exception:  # noqa: BLE001
            pass
        return ours
    finally:
        await admin.close()


async def group_state(group: str) -> tuple[str, int] | None:
    """(state, members) of a consumer group, or None if it cannot be described."""
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap())
    await admin.start()
    try:
        for resp in await admin.describe_consumer_groups([group]):
            for g in resp.groups:
                if g[1] == group:
                    return str(g[2]), len(g[5])
    except Exception:  # noqa: BLE001
        return None
    finally:
        await admin.close()
    return None


def make_producer(*, linger_ms: int = 5, acks: Any = 1):  # -> AIOKafkaProducer
    from aiokafka import AIOKafkaProducer
    return AIOKafkaProducer(bootstrap_servers=bootstrap(), acks=acks, linger_ms=linger_ms,
                            max_batch_size=512 * 1024, max_request_size=2 * 1024 * 1024, request_timeout_ms=60_000)


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
            from aiokafka.partitioner import murmur2
            p = self._part[key] = (murmur2(key) & 0x7FFFFFFF) % self.partitions
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


async def produce_backlog(topic: str, partitions: int, events: list[dict[str, Any]], progress: Progress,
                          label: str) -> float:
    """Send every event flat out (``ts`` = send time). Returns the seconds it took."""
    producer = make_producer(linger_ms=20)
    await producer.start()
    t0 = time.monotonic()
    try:
        sender = BatchSender(producer, topic, partitions)
        for i, ev in enumerate(events):
            key, value = encode(ev, now_ms())
            await sender.add(key, value)
            if i % 20_000 == 0:
                el = max(1e-6, time.monotonic() - t0)
                progress.show(f"{label}: producing the backlog {i:,}/{len(events):,} ({i / el:,.0f}/s)")
        await sender.flush()
    finally:
        await producer.stop()
    el = time.monotonic() - t0
    progress.done(f"{label}: produced the backlog {len(events):,} in {el:.1f}s ({len(events) / el:,.0f}/s)")
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
        from aiokafka import AIOKafkaConsumer, TopicPartition
        c = self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(), enable_auto_commit=False,
                                              auto_offset_reset="latest", fetch_max_wait_ms=50,
                                              max_partition_fetch_bytes=4 * MIB)
        await c.start()
        deadline = time.monotonic() + timeout_s
        tps: list[Any] = []
        for t in self.topics:
            while not c.partitions_for_topic(t):
                if time.monotonic() > deadline:
                    raise BenchError(f"no metadata for {t}")
                await c._client.force_metadata_update()
                await asyncio.sleep(POLL_S)
            tps.extend(TopicPartition(t, p) for p in sorted(c.partitions_for_topic(t)))
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


# ============================================================================ systems under test
class Proc(ChildProcess):
    """A subprocess of a system under test, with its log, CPU time and memory."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        super().__init__(argv, env, log_path, cwd=ROOT)
        self.name = name
        self.peak: dict[str, int] = {}

    def check(self) -> None:
        if self.exit_code() is not None:
            raise BenchError(f"{self.name} exited with {self.exit_code()}:\n{self.log_tail(30)}")

    def cpu(self) -> float:
        return proc_cpu_s(self.pid) or 0.0

    def mem(self) -> dict[str, int]:
        m = proc_mem(self.pid)
        if m:
            self.peak = m
        return self.peak

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int | None:
        if self.exit_code() is None and self.proc is not None:
            self.mem()                     # the last reading before it goes
        return super().stop(sig, timeout_s)


class System:
    """Base: a prefix, the topics to create before start, processes, a consumed count."""

    name = "system"
    label = "system"

    def __init__(self, workdir: Path, prefix: str, partitions: int) -> None:
        self.workdir, self.prefix, self.partitions = workdir, prefix, partitions
        self.procs: list[Proc] = []

    @property
    def input_topic(self) -> str:
        return f"{self.prefix}.events"

    def topics_to_create(self) -> dict[str, int]:
        return {self.input_topic: self.partitions}

    def output_topics(self) -> list[str]:
        return [f"{self.prefix}.out"]

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        env["ORCH_BOOTSTRAP"] = bootstrap()
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def start(self) -> None:
        raise NotImplementedError

    async def count(self) -> float:
        raise NotImplementedError

    def check(self) -> None:
        for p in self.procs:
            p.check()

    def cpu(self) -> float:
        return sum(p.cpu() for p in self.procs)

    def mem(self) -> list[dict[str, int]]:
        return [p.mem() for p in self.procs]

    async def stop(self) -> list[int | None]:
        return await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.procs))

    async def close(self) -> None:
        pass


class OutputCounted(System):
    """A baseline whose progress is the number of records on its output topic (1 per event)."""

    def __init__(self, workdir: Path, prefix: str, partitions: int) -> None:
        super().__init__(workdir, prefix, partitions)
        self._consumer: Any = None
        self._tps: list[Any] = []

    def topics_to_create(self) -> dict[str, int]:
        return {self.input_topic: self.partitions, f"{self.prefix}.out": self.partitions}

    async def count(self) -> float:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(), enable_auto_commit=False)
            await self._consumer.start()
            self._tps = [TopicPartition(f"{self.prefix}.out", p) for p in range(self.partitions)]
        ends = await self._consumer.end_offsets(self._tps)
        return float(sum(ends.values()))

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


class Passthrough(OutputCounted):
    name = "passthrough"
    label = "aiokafka passthrough (ceiling)"

    async def start(self) -> None:
        env = {**self.base_env(), "BENCH_BOOTSTRAP": bootstrap(), "BENCH_IN": self.input_topic,
               "BENCH_OUT": f"{self.prefix}.out", "BENCH_GROUP": f"{self.prefix}-passthrough"}
        p = Proc("passthrough", [sys.executable, str(BENCH_DIR / "passthrough.py")], env,
                 self.workdir / f"{self.prefix}.log")
        self.procs = [p]
        p.start()


class NaiveFaust(OutputCounted):
    name = "naive_faust"
    label = "naive Faust (table get+set)"

    async def start(self) -> None:
        env = {**self.base_env(), "BENCH_BOOTSTRAP": bootstrap(), "BENCH_IN": self.input_topic,
               "BENCH_OUT": f"{self.prefix}.out", "BENCH_APP_ID": f"{self.prefix}-naive",
               "BENCH_PARTITIONS": str(self.partitions), "BENCH_DATA_DIR": str(self.workdir / f"data-{self.prefix}")}
        p = Proc("naive_faust", [sys.executable, str(BENCH_DIR / "naive_faust.py")], env,
                 self.workdir / f"{self.prefix}.log")
        self.procs = [p]
        p.start()


class EngineWorkers(System):
    """``python -m orchestrator worker`` x N: a black box (env, topics, ``/metrics``)."""

    name = "engine"
    label = "engine (orchestrator worker)"

    def __init__(self, workdir: Path, prefix: str, partitions: int, *, workers: int = 1,
                 journeys: Path = ROOT / "journeys", policies: Path = ROOT / "policies.yaml") -> None:
        super().__init__(workdir, prefix, partitions)
        self.workers, self.journeys, self.policies = workers, journeys, policies
        self.ports: list[int] = []
        self._last: dict[int, float] = {}

    def output_topics(self) -> list[str]:
        from orchestrator.core import load_policies
        channels = load_policies(str(self.policies)).channels
        return [f"{self.prefix}.actions.{c}" for c in channels]

    @property
    def group(self) -> str:
        return f"{self.prefix}-orchestrator"

    async def start(self, ready_timeout_s: float = 120.0) -> None:
        self.procs, self.ports = [], []
        for i in range(self.workers):
            port = free_port()
            env = {**self.base_env(), "ORCH_TOPIC_PREFIX": self.prefix, "ORCH_PARTITIONS": str(self.partitions),
                   "ORCH_DATA_DIR": str(self.workdir / f"data-{self.prefix}-{i}"), "ORCH_WEB_PORT": str(port),
                   "ORCH_JOURNEYS": str(self.journeys), "ORCH_POLICIES": str(self.policies)}
            p = Proc(f"worker-{i}", [sys.executable, "-m", "orchestrator", "worker"], env,
                     self.workdir / f"{self.prefix}-{i}.log")
            self.procs.append(p)
            self.ports.append(port)
        for p in self.procs:
            p.start()
        deadline = time.monotonic() + ready_timeout_s
        pending = set(range(self.workers))
        while pending:
            self.check()
            for i in list(pending):
                if await asyncio.to_thread(scrape, self.ports[i], 1.0) is not None:
                    pending.discard(i)
            if time.monotonic() > deadline:
                raise BenchError(f"{len(pending)} worker(s) not answering /metrics after {ready_timeout_s:.0f}s:\n"
                                 + self.procs[min(pending)].log_tail())
            if pending:
                await asyncio.sleep(POLL_S)

    async def histogram(self, name: str) -> dict[float, float]:
        """Cumulative bucket counts {le: count} of a histogram, summed over the workers."""
        out: dict[float, float] = {}
        for port in self.ports:
            m = await asyncio.to_thread(scrape, port, 2.0) or {}
            for k, v in m.items():
                if k.startswith(f"{name}_bucket{{"):
                    le = re.search(r"le=([^,}]+)", k)
                    if le:
                        b = float(le.group(1))
                        out[b] = out.get(b, 0.0) + v
        return out

    async def count(self) -> float:
        async def one(i: int) -> float:
            m = await asyncio.to_thread(scrape, self.ports[i], 2.0)
            if m is not None:
                self._last[i] = total(m, EVENTS_IN)
            return self._last.get(i, 0.0)
        return sum(await asyncio.gather(*(one(i) for i in range(len(self.ports)))))


# ============================================================================ measurements
class Sampler:
    """Samples (wall time, consumed, system CPU s, broker CPU s, host busy jiffies, host total jiffies,
    this process's CPU s)."""

    def __init__(self, system: System, broker: int | None) -> None:
        self.system, self.broker = system, broker
        self.samples: list[tuple[float, float, float, float, float, float, float]] = []

    async def take(self) -> tuple[float, float, float, float, float, float, float]:
        c = await self.system.count()
        h = host_cpu() or (0.0, 0.0)
        s = (time.time(), c, self.system.cpu(), (proc_cpu_s(self.broker) or 0.0) if self.broker else 0.0,
             h[0], h[1], time.process_time())
        self.samples.append(s)
        return s

    def rate(self, window_s: float = 3.0) -> float:
        if len(self.samples) < 2:
            return 0.0
        t1, c1 = self.samples[-1][:2]
        t0, c0 = self.samples[0][:2]
        for s in self.samples:
            if t1 - s[0] >= window_s:
                t0, c0 = s[:2]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def interp(samples: list[tuple[float, ...]], t: float, col: int) -> float:
    """Column ``col`` of the samples, linearly interpolated at wall time ``t`` (clamped)."""
    if t <= samples[0][0]:
        return samples[0][col]
    for a, b in zip(samples, samples[1:]):
        if a[0] <= t <= b[0]:
            if b[0] == a[0]:
                return b[col]
            return a[col] + (b[col] - a[col]) * (t - a[0]) / (b[0] - a[0])
    return samples[-1][col]


def window_between(samples: list[tuple[float, ...]], t_lo: float, t_hi: float, events: float) -> dict[str, Any] | None:
    """Rate and costs of ``events`` consumed between wall times ``t_lo`` and ``t_hi``."""
    dt = t_hi - t_lo
    if dt <= 0 or events <= 0 or len(samples) < 2:
        return None

    def delta(col: int) -> float:
        return interp(samples, t_hi, col) - interp(samples, t_lo, col)

    cpu, broker, busy, tot, own = delta(2), delta(3), delta(4), delta(5), delta(6)
    return {
        "events_per_s": round(events / dt, 1),
        "window_s": round(dt, 2), "window_events": int(events),
        "cpu_s_per_1k": round(cpu / events * 1000, 4),
        "cpu_cores_used": round(cpu / dt, 2),
        "broker_cpu_s_per_1k": round(broker / events * 1000, 4) if broker else None,
        "broker_cpu_cores_used": round(broker / dt, 2) if broker else None,
        "bench_cpu_cores_used": round(own / dt, 2),
        "host_cpu_busy_pct": round(100 * busy / tot, 1) if tot else None,
        # Everything else on the host (other people's jobs): skews the numbers when it is not ~0.
        "other_cpu_cores_used": round(max(0.0, (busy / CLK_TCK) - cpu - broker - own) / dt, 2) if tot else None,
    }


def window_stats(samples: list[tuple[float, ...]], lo_count: float, hi_count: float, *,
                 t_min: float = 0.0) -> dict[str, Any] | None:
    """Between the first sample at/above ``lo_count`` (and at/after ``t_min``) and the first
    at/above ``hi_count``."""
    lo = next((s for s in samples if s[1] >= lo_count and s[0] >= t_min), None)
    hi = next((s for s in samples if s[1] >= hi_count), None)
    if lo is None or hi is None or hi[0] - lo[0] < 1.0 or hi[1] <= lo[1]:
        return None
    return window_between(samples, lo[0], hi[0], hi[1] - lo[1])


async def output_times(topic: str, partitions: int, timeout_s: float = 60.0) -> list[float]:
    """Sorted record timestamps (s) of an output topic up to its current end: when each output was
    produced, to the millisecond (a drain faster than the sampling is still measured exactly)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap(), enable_auto_commit=False, auto_offset_reset="earliest",
                         max_partition_fetch_bytes=8 * MIB, fetch_max_bytes=64 * MIB)
    await c.start()
    out: list[float] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + timeout_s
        while remaining:
            batch = await c.getmany(timeout_ms=200, max_records=50_000)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        out.append(m.timestamp / 1000)
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            if time.monotonic() > deadline:
                raise BenchError(f"reading {topic}: not at the end within {timeout_s:.0f}s")
    finally:
        await c.stop()
    out.sort()
    return out


class Profiler:
    """``py-spy record`` (non-blocking, 100 Hz) on the first process of a system, summarised:
    the share of samples whose innermost Python frame is in each package (self time), the share
    of samples in which a package appears at all (inclusive), and the top functions by self time."""

    def __init__(self, seconds: float, path: Path) -> None:
        self.seconds = seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.path = path                 # collapsed stacks, kept with the logs (--keep)
        self.error: str | None = None

    @staticmethod
    def executable() -> str | None:
        here = Path(sys.executable).parent / "py-spy"
        return str(here) if here.exists() else shutil.which("py-spy")

    def start(self, system: System) -> None:
        exe = self.executable()
        if exe is None:
            self.error = "py-spy not installed (pip install py-spy)"
            return
        self.proc = subprocess.Popen([exe, "record", "-p", str(system.procs[0].pid), "-d", str(int(self.seconds)),
                                      "-r", "100", "--nonblocking", "-f", "raw", "-o", str(self.path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self) -> dict[str, Any]:
        if self.proc is None:
            return {"error": self.error or "not started"}
        try:
            _, err = self.proc.communicate(timeout=self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.path.exists():
            return {"error": (err or b"").decode(errors="replace").strip()[-300:] or "no output"}
        summary = summarise_profile(self.path.read_text(errors="replace"))
        summary["seconds"] = self.seconds
        return summary


PROFILE_PACKAGES = (
    ("orchestrator/core/", "orchestrator.core (the engine)"),
    ("orchestrator/runtime/", "orchestrator.runtime (worker glue)"),
    ("orchestrator/observability/", "orchestrator.observability (metrics)"),
    ("prometheus_client/", "prometheus_client"),
    ("faust/", "faust"),
    ("mode/", "mode"),
    ("aiokafka/", "aiokafka"),
    ("rocksdict", "rocksdict"),
    ("msgspec", "msgspec"),
    ("orjson", "orjson"),
    ("asyncio/", "asyncio"),
    ("uvloop", "uvloop"),
    ("aiohttp/", "aiohttp"),
)


def _package(frame: str) -> str:
    for needle, name in PROFILE_PACKAGES:
        if needle in frame:
            return name
    m = re.search(r"\(([^)]*?)(?::\d+)?\)$", frame)
    return f"other ({m.group(1).split('/')[0]})" if m else "other"


def summarise_profile(raw: str) -> dict[str, Any]:
    """Collapsed stacks ("f1 (file:line);f2 (...) count" per line) -> shares by package and function."""
    selfp: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    funcs: Counter[str] = Counter()
    callers: dict[str, Counter[str]] = {}
    n = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        n += c
        leaf = frames[-1]
        selfp[_package(leaf)] += c
        funcs[leaf] += c
        chain = " <- ".join(reversed(frames[-6:-1]))
        callers.setdefault(leaf, Counter())[chain] += c
        for pkg in {_package(f) for f in frames}:
            incl[pkg] += c
    if not n:
        return {"samples": 0}
    pct = lambda c: round(100 * c / n, 1)  # noqa: E731
    return {"samples": n,
            "self_by_package": {k: pct(v) for k, v in selfp.most_common()},
            "inclusive_by_package": {k: pct(v) for k, v in incl.most_common()},
            "top_functions_self": {k: pct(v) for k, v in funcs.most_common(25)},
            "callers_of_top_functions": {f: {k: pct(v) for k, v in callers[f].most_common(4)}
                                         for f, _ in funcs.most_common(3)}}


async def throughput_phase(system: System, backlog: list[dict[str, Any]], *, baseline: float = 0.0,
                           cap_s: float, progress: Progress, produce_first: bool = True,
                           start_timeout_s: float = 180.0,
                           on_started: Callable[[System], None] | None = None) -> dict[str, Any]:
    """Drain a backlog and measure. ``produce_first``: produce, then start the system (the main run);
    otherwise the system already runs (scale-out) and the backlog is produced while it is sampled.

    The rate is taken between 10 % and 90 % of the backlog: from the system's count sampled every
    0.2 s, or, for the baselines (one output per event), from the output records' timestamps."""
    n = len(backlog)
    sampler = Sampler(system, broker_pid())
    result: dict[str, Any] = {"backlog": n}
    t_produced = 0.0
    producing: asyncio.Task[float] | None = None
    if produce_first:
        result["produce_s"] = round(await produce_backlog(system.input_topic, system.partitions, backlog,
                                                          progress, system.name), 2)
        t_start = time.time()
        await system.start()
        result["ready_s"] = round(time.time() - t_start, 2)
        if on_started is not None:
            on_started(system)
    else:
        t_start = time.time()
        producing = asyncio.create_task(produce_backlog(system.input_topic, system.partitions, backlog,
                                                        Progress(), system.name))
    first_t: float | None = None
    poll = 0.1 if isinstance(system, OutputCounted) else POLL_S
    while True:
        system.check()
        t, c = (await sampler.take())[:2]
        done = c - baseline
        if first_t is None and done > 0:
            first_t = t
        if producing is not None and producing.done() and not t_produced:
            result["produce_s"] = round(producing.result(), 2)
            t_produced = time.time()
        progress.show(f"{system.name}: consumed {done:,.0f}/{n:,} ({sampler.rate():,.0f}/s) | lag {n - done:,.0f} | "
                      f"{system.cpu():,.1f} cpu-s" + (" | producing" if producing is not None and not t_produced
                                                      else ""))
        if done >= n:
            break
        if first_t is None and t - t_start > start_timeout_s:
            raise BenchError(f"{system.name}: nothing consumed {start_timeout_s:.0f}s after start")
        if first_t is not None and t - first_t > cap_s:
            result["capped"] = True
            break
        await asyncio.sleep(poll)
    await asyncio.sleep(poll)
    await sampler.take()
    progress.done()
    if producing is not None:
        result["produce_s"] = round(await producing, 2)
        t_produced = t_produced or time.time()
    samples = [(s[0], s[1] - baseline, *s[2:]) for s in sampler.samples]
    final = min(float(n), samples[-1][1])
    result["consumed"] = int(final)
    result["drained"] = final >= n
    result["first_output_after_start_s"] = round((first_t or t_start) - t_start, 2)
    w = None
    if isinstance(system, OutputCounted):
        times = await output_times(system.output_topics()[0], system.partitions)
        times = times[int(baseline):]
        if len(times) >= 10:
            i10, i90 = int(0.1 * len(times)), int(0.9 * len(times)) - 1
            w = window_between(samples, times[i10], times[i90], i90 - i10)
            if w is not None:
                w["window"] = "10% to 90% of the backlog, by the output records' timestamps"
                result["elapsed_s"] = round(times[-1] - times[0], 2)
    if w is None:
        w = window_stats(samples, 0.1 * final, 0.9 * final, t_min=t_produced if not produce_first else 0.0)
        if w is not None:
            w["window"] = "10% to 90% of the backlog" + ("" if produce_first else ", after production ended")
    if w is None:     # too fast for the sampling: the whole drain
        w = window_stats(samples, 1, final)
        if w is not None:
            w["window"] = "first to last sample"
    if w is None:
        raise BenchError(f"{system.name}: not enough samples to measure a rate")
    result.setdefault("elapsed_s", round(samples[-1][0] - (first_t or t_start), 2))
    result.update(w)
    return result


async def latency_phase(system: System, events: LazyEvents, *, rate: float, warmup_s: float,
                        measure_s: float, adapter: bool, progress: Progress,
                        drain_timeout_s: float = 60.0) -> dict[str, Any]:
    """Paced load at ``rate`` events/s (feedback included) on the running system; latency of outputs."""
    producer = make_producer(linger_ms=2)
    await producer.start()
    adapter_obj = Adapter(producer, system.input_topic) if adapter else None
    sink = OutputSink(system.output_topics(), on_record=adapter_obj.on_action if adapter_obj else None)
    await sink.start()
    if adapter_obj is not None:
        adapter_obj.start()
    sampler = Sampler(system, broker_pid())
    base = (await sampler.take())[1]
    source = events.reader()
    window: dict[str, int] = {}
    t0 = time.monotonic()

    fed_now = {"fed": 0}
    hist: dict[str, dict[float, float]] = {}

    def tick(sent: int, el: float) -> None:
        fb = adapter_obj.sent if adapter_obj else 0
        fed_now["fed"] = sent + fb
        lag = sent + fb - (sampler.samples[-1][1] - base)
        phase = "warm-up" if el < warmup_s else "measuring"
        progress.show(f"{system.name}: latency at {rate:,.0f}/s ({phase} {el:4.0f}s) | sent {sent:,} + feedback {fb:,}"
                      f" | lag {lag:,.0f} | outputs {sink.count:,} | {len(sink.samples):,} latency samples")

    async def sample_loop() -> None:
        while True:
            await asyncio.sleep(0.5)
            c = (await sampler.take())[1]
            el = time.monotonic() - t0
            if "start" not in window and el >= warmup_s:
                window["start"] = now_ms()
                window["i0"] = len(sampler.samples) - 1
                window["lag0"] = int(max(0, fed_now["fed"] - (c - base)))
                if isinstance(system, EngineWorkers):
                    hist["before"] = await system.histogram("orch_event_to_action_seconds")

    loop_lag: list[float] = []

    async def loop_monitor() -> None:
        """This process's own event-loop delays: a stalled benchmark stamps arrivals late."""
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            loop_lag.append((time.perf_counter() - t - 0.01) * 1000)

    sampling = asyncio.create_task(sample_loop())
    monitoring = asyncio.create_task(loop_monitor())
    error = None
    try:
        sent = await paced(producer, system.input_topic, source, rate=rate,
                           duration_s=warmup_s + measure_s,
                           extra=(lambda: adapter_obj.sent) if adapter_obj else (lambda: 0),
                           on_tick=tick)
        window["end"] = now_ms()
        s_end = await sampler.take()
        if isinstance(system, EngineWorkers) and "before" in hist:
            hist["after"] = await system.histogram("orch_event_to_action_seconds")
        fed_at_end = sent + (adapter_obj.sent if adapter_obj else 0)
        i1 = len(sampler.samples) - 1
        if adapter_obj is not None:
            await adapter_obj.stop()
        fed = sent + (adapter_obj.sent if adapter_obj else 0)
        deadline = time.monotonic() + drain_timeout_s
        while True:
            system.check()
            c = (await sampler.take())[1]
            if c - base >= fed or time.monotonic() > deadline:
                break
            await asyncio.sleep(POLL_S)
        await asyncio.sleep(1.0)            # the last outputs reach the sink
    except BenchError as exc:
        error = str(exc).splitlines()[0]
        raise
    finally:
        for task in (sampling, monitoring):
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        await sink.stop()
        if adapter_obj is not None:
            await adapter_obj.stop()
        await producer.stop()
        progress.done()
    start_ms, end_ms = window.get("start", 0), window["end"]
    lat = sorted(l for ts, l in sink.samples if start_ms <= ts <= end_ms)
    final = sampler.samples[-1][1] - base
    i0 = window.get("i0", 0)
    s0 = sampler.samples[i0]
    w = window_stats(sampler.samples[i0:i1 + 1], s0[1], s_end[1]) if i1 > i0 else None
    res: dict[str, Any] = {
        "offered_rate_per_s": round(rate, 1), "warmup_s": warmup_s, "measure_s": measure_s,
        "events_sent": sent, "feedback_sent": adapter_obj.sent if adapter_obj else 0,
        "actions_seen_by_adapter": adapter_obj.actions if adapter_obj else None,
        "outputs_read": sink.count, "latency_samples": len(lat),
        "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else None,
        "mean_ms": round(sum(lat) / len(lat), 1) if lat else None,
        "consumed_during_phase": int(final), "all_consumed": final >= fed,
        "lag_at_start_of_measurement": window.get("lag0"),
        "lag_at_end_of_measurement": int(max(0, fed_at_end - (s_end[1] - base))),
    }
    if w is not None:
        res["consumed_rate_per_s"] = w["events_per_s"]
        for k in ("cpu_s_per_1k", "cpu_cores_used", "broker_cpu_cores_used", "bench_cpu_cores_used",
                  "host_cpu_busy_pct", "other_cpu_cores_used"):
            res[k] = w[k]
    stalls = sorted(loop_lag)
    res["bench_loop_delay_ms"] = {"p99": round(percentile(stalls, 99) or 0, 1),
                                  "max": round(stalls[-1], 1) if stalls else None}
    if "after" in hist:
        # The worker's own view: event ts to the moment it queued the action (before the producer).
        res["worker_reported_event_to_action"] = bucket_quantiles(hist["before"], hist["after"])
    if error:
        res["error"] = error
    return res


# ============================================================================ the run
def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {"nproc": os.cpu_count(), "python": platform.python_version(),
                             "platform": platform.platform(), "bootstrap": bootstrap()}
    try:
        m = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        facts["memory_bytes"] = int(m.group(1)) * 1024 if m else None
        cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        facts["cpu"] = cpu.group(1).strip() if cpu else None
    except OSError:
        pass
    try:
        m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", (ROOT / "deploy" / "kafka" / "pom.xml").read_text())
        facts["kafka"] = m.group(1) if m else None
    except OSError:
        facts["kafka"] = None
    try:
        from importlib.metadata import version
        facts["libraries"] = {n: version(n) for n in ("faust-streaming", "aiokafka", "rocksdict", "msgspec", "uvloop")}
    except Exception:  # noqa: BLE001
        facts["libraries"] = {}
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        facts["git"] = (rev + ("+dirty" if dirty else "")) if rev else None
    except (OSError, subprocess.SubprocessError):
        facts["git"] = None
    facts["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    facts["loadavg_at_start"] = loadavg()
    a = host_cpu()
    time.sleep(2.0)
    b = host_cpu()
    if a and b and b[1] > a[1]:
        # Before anything of the benchmark runs: what else keeps this host busy.
        facts["host_cpu_busy_pct_before"] = round(100 * (b[0] - a[0]) / (b[1] - a[1]), 1)
    return facts


def load_pure_core():  # -> module benchmarks/pure_core.py
    path = BENCH_DIR / "pure_core.py"
    if not path.exists():
        raise BenchError(f"{path} not found (run from a source checkout)")
    spec = importlib.util.spec_from_file_location("_bench_pure_core", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def run_system(system: System, backlog: list[dict[str, Any]], args: argparse.Namespace,
                     latency_events: LazyEvents | None, rate_for: Callable[[dict[str, Any]], float | None],
                     progress: Progress) -> dict[str, Any]:
    """Throughput, then (same running system) latency at ``rate_for(throughput result)`` events/s."""
    res: dict[str, Any] = {"label": system.label, "prefix": system.prefix, "partitions": system.partitions}
    try:
        await create_topics(system.topics_to_create())
        profiler = None
        if getattr(args, "profile", False) and isinstance(system, EngineWorkers):
            profiler = Profiler(args.profile_s, system.workdir / f"{system.prefix}.pyspy.txt")
        res["throughput"] = await throughput_phase(system, backlog, cap_s=args.drain_cap, progress=progress,
                                                   on_started=profiler.start if profiler else None)
        if profiler is not None:
            res["profile"] = await asyncio.to_thread(profiler.finish)
            note(f"{system.name}: py-spy profile: " + ", ".join(
                f"{k} {v}%" for k, v in list(res["profile"].get("self_by_package", {}).items())[:6]))
        note(f"{system.name}: {res['throughput']['events_per_s']:,.0f} events/s sustained, "
             f"{res['throughput']['cpu_s_per_1k']:.3f} cpu-s per 1k events")
        rate = rate_for(res["throughput"])
        if latency_events is not None and rate:
            # Let a capped drain finish first, so the latency phase starts with no lag.
            await wait_for_count(system, len(backlog), timeout_s=max(60.0, args.drain_cap), progress=progress)
            res["latency"] = await latency_phase(system, latency_events, rate=rate, warmup_s=args.warmup,
                                                 measure_s=args.latency_s, adapter=isinstance(system, EngineWorkers),
                                                 progress=progress)
            lat = res["latency"]
            note(f"{system.name}: latency at {rate:,.0f}/s p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
                 f"p99 {lat['p99_ms']} ms ({lat['latency_samples']:,} samples)")
    except Exception as exc:  # noqa: BLE001 - one failed system must not lose the others' results
        res["error"] = f"{type(exc).__name__}: {exc}"
        note(f"{system.name} failed: {exc}")
    finally:
        mems = system.mem()
        res["peak_memory_bytes"] = max((m.get("VmHWM", 0) for m in mems), default=None)
        res["memory_bytes_at_end"] = max((m.get("VmRSS", 0) for m in mems), default=None)
        codes = await system.stop()
        res["exit_codes"] = codes
        await system.close()
    return res


async def wait_for_count(system: System, target: float, *, timeout_s: float, progress: Progress) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        system.check()
        c = await system.count()
        if c >= target:
            progress.done()
            return
        if time.monotonic() > deadline:
            progress.done()
            raise BenchError(f"{system.name}: consumed {c:,.0f} of {target:,.0f} within {timeout_s:.0f}s")
        progress.show(f"{system.name}: finishing the backlog {c:,.0f}/{target:,.0f}")
        await asyncio.sleep(POLL_S)


async def run_scale(workdir: Path, run_id: str, k: int, backlog: list[dict[str, Any]], args: argparse.Namespace,
                    progress: Progress) -> dict[str, Any]:
    prefix = f"bench-{run_id}-x{k}"
    system = EngineWorkers(workdir, prefix, args.partitions, workers=k)
    res: dict[str, Any] = {"workers": k, "prefix": prefix}
    try:
        await create_topics(system.topics_to_create())
        t0 = time.monotonic()
        await system.start()
        # Wait for one stable group with every worker, then warm up every partition.
        deadline = time.monotonic() + 120
        while True:
            system.check()
            st = await group_state(system.group)
            progress.show(f"engine x{k}: waiting for the group: {st}")
            if st is not None and st[0] == "Stable" and st[1] == k:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"engine x{k}: group not stable with {k} members after 120s ({st})")
            await asyncio.sleep(0.5)
        warm = [{"event_id": f"w-{run_id}-{k}-{i}", "customer_id": f"warm-{i}", "type": "bench.warmup",
                 "properties": {}} for i in range(64)]
        producer = make_producer()
        await producer.start()
        try:
            for ev in warm:
                key, value = encode(ev, now_ms())
                await producer.send(system.input_topic, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()
        await wait_for_count(system, len(warm), timeout_s=120, progress=progress)
        st = await group_state(system.group)
        res["ready_s"] = round(time.monotonic() - t0, 2)
        res["group_at_start"] = st
        base = await system.count()
        res.update(await throughput_phase(system, backlog, baseline=base, cap_s=args.drain_cap, progress=progress,
                                          produce_first=False))
        res["group_at_end"] = await group_state(system.group)
        note(f"engine x{k}: {res['events_per_s']:,.0f} events/s, {res['cpu_s_per_1k']:.3f} cpu-s per 1k events, "
             f"{res['cpu_cores_used']} cores busy, host {res['host_cpu_busy_pct']}% busy")
    except Exception as exc:  # noqa: BLE001
        res["error"] = f"{type(exc).__name__}: {exc}"
        note(f"engine x{k} failed: {exc}")
    finally:
        mems = system.mem()
        res["peak_memory_bytes_per_worker"] = [m.get("VmHWM") for m in mems]
        res["exit_codes"] = await system.stop()
        await system.close()
    return res


async def run(args: argparse.Namespace) -> dict[str, Any]:
    progress = Progress()
    run_id = uuid.uuid4().hex[:6]
    t_begin = time.monotonic()
    result: dict[str, Any] = {"benchmark": "load", "run_id": run_id, "machine": machine_facts(),
                              "params": {k: v for k, v in vars(args).items() if k not in ("func", "out")},
                              "systems": {}, "errors": []}
    result["params"]["out"] = str(args.out)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{run_id}-"))
    prefixes: list[str] = []
    try:
        # ---- workload
        note(f"building the workload: {args.events:,} events ({args.customers:,} customers, seed {args.seed})")
        t = time.monotonic()
        shoppers = Shoppers(seed=args.seed, customers=args.customers, zipf_s=args.zipf_s, zipf_q=args.zipf_q,
                            tag=run_id)
        engine = load_engine(ROOT / "journeys", ROOT / "policies.yaml")
        backlog, stats = build_backlog(shoppers, args.events, engine)
        stats["build_s"] = round(time.monotonic() - t, 2)
        result["workload"] = stats
        note(f"workload: {stats['events']:,} events, {stats['distinct_customers']:,} customers, "
             f"{100 * stats['feedback_share']:.1f}% feedback, {stats['predicted_actions']:,} actions predicted "
             f"({stats['build_s']}s)")
        # Events for the latency phases: the shoppers' stream continues (feedback comes live); made
        # on first use, so every system gets the same ones.
        latency_events = LazyEvents(shoppers)
        # The workload stays in memory for the whole run: keep the garbage collector from walking
        # it (a full collection over it would stall this process and stamp arrivals late).
        gc.collect()
        gc.freeze()

        # ---- pure core
        if "pure_core" in args.systems:
            try:
                pc = load_pure_core()
                note("pure core: the engine in-process on the same events (no Kafka)")
                result["systems"]["pure_core"] = pc.measure(backlog, journeys=ROOT / "journeys",
                                                            policies=ROOT / "policies.yaml")
                r = result["systems"]["pure_core"]
                note(f"pure core: {r['engine']['events_per_s']:,.0f} events/s per core (engine only), "
                     f"{r['worker_path']['events_per_s']:,.0f} with the worker's codecs")
            except Exception as exc:  # noqa: BLE001
                result["errors"].append(f"pure_core: {type(exc).__name__}: {exc}")
                note(f"pure core failed: {exc}")

        # ---- the engine first: its sustained rate sets the latency phase's rate for everyone
        chosen: dict[str, float] = {"rate": args.rate} if args.rate else {}

        def rate_for(throughput: dict[str, Any]) -> float:
            if "rate" not in chosen:
                tp = throughput.get("events_per_s") if throughput.get("system") == "engine" else None
                if tp:
                    chosen["rate"] = min(args.latency_cap_rate, 0.5 * tp)
                    note(f"latency phases run at {chosen['rate']:,.0f} events/s (50% of the engine's sustained rate)")
                else:
                    chosen["rate"] = 1000.0
                    note("no engine rate measured: the latency phases run at 1,000 events/s")
            return chosen["rate"]

        order = [s for s in ("engine", "passthrough", "naive_faust") if s in args.systems]
        for name in order:
            prefix = f"bench-{run_id}-{name.replace('_', '')}"
            prefixes.append(prefix)
            cls = {"engine": EngineWorkers, "passthrough": Passthrough, "naive_faust": NaiveFaust}[name]
            system = cls(workdir, prefix, args.partitions)
            note(f"{name}: {system.label}, prefix {prefix}")

            def tagged(throughput: dict[str, Any], name: str = name) -> float:
                return rate_for({**throughput, "system": name})

            res = await run_system(system, backlog, args, latency_events if args.latency_s > 0 else None,
                                   tagged, progress)
            result["systems"][name] = res
            if res.get("error"):
                result["errors"].append(f"{name}: {res['error'].splitlines()[0]}")
            await cleanup(prefix, workdir, keep=args.keep)
        result["latency_rate_per_s"] = chosen.get("rate")

        # ---- scale-out
        if args.scale:
            scale_backlog = backlog[: args.scale_events]
            rows = []
            for k in args.scale:
                note(f"scale-out: {k} worker process(es), {len(scale_backlog):,} events")
                row = await run_scale(workdir, run_id, k, scale_backlog, args, progress)
                rows.append(row)
                prefixes.append(row["prefix"])
                if row.get("error"):
                    result["errors"].append(f"scale x{k}: {row['error'].splitlines()[0]}")
                await cleanup(row["prefix"], workdir, keep=args.keep)
            one = next((r.get("events_per_s") for r in rows if r["workers"] == 1 and r.get("events_per_s")), None)
            for r in rows:
                if one and r.get("events_per_s"):
                    r["scaling_ratio"] = round(r["events_per_s"] / one, 2)
                    r["efficiency"] = round(r["events_per_s"] / one / r["workers"], 2)
            result["scaling"] = {"events": len(scale_backlog), "rows": rows, "cores": os.cpu_count(),
                                 "method": "workers started first; the group waited Stable with every member and "
                                           "warmed up; then the backlog is produced flat out; rate from 10% to 90% "
                                           "of the backlog, not before production ended"}
    finally:
        result["machine"]["loadavg_at_end"] = loadavg()
        result["duration_s"] = round(time.monotonic() - t_begin, 1)
        for prefix in prefixes:
            await cleanup(prefix, workdir, keep=args.keep, quiet=True)
        if args.keep:
            note(f"kept {workdir} (worker logs and data) and the topics")
        elif not result["errors"]:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            note(f"logs kept in {workdir}")
    derive(result)
    return result


_cleaned: set[str] = set()


async def cleanup(prefix: str, workdir: Path, *, keep: bool, quiet: bool = False) -> None:
    if keep or prefix in _cleaned:
        return
    _cleaned.add(prefix)
    try:
        deleted = await delete_prefix(prefix)
        if not quiet:
            note(f"deleted {len(deleted)} topics of {prefix}")
    except Exception as exc:  # noqa: BLE001 - cleanup is best effort
        note(f"could not delete the topics of {prefix}: {exc}")
    for p in workdir.glob(f"data-{prefix}*"):
        shutil.rmtree(p, ignore_errors=True)


def derive(result: dict[str, Any]) -> None:
    """Ratios between systems."""
    s = result["systems"]

    def tp(name: str) -> float | None:
        return (s.get(name) or {}).get("throughput", {}).get("events_per_s")

    eng, naive, passt = tp("engine"), tp("naive_faust"), tp("passthrough")
    core = ((s.get("pure_core") or {}).get("engine") or {}).get("events_per_s")
    ratios: dict[str, Any] = {}
    if eng and naive:
        ratios["engine/naive_faust"] = round(eng / naive, 4)
    if eng and passt:
        ratios["engine/passthrough"] = round(eng / passt, 5)
    if eng and core:
        ratios["engine/pure_core"] = round(eng / core, 4)
    if naive and passt:
        ratios["naive_faust/passthrough"] = round(naive / passt, 5)
    result["ratios"] = ratios


# ============================================================================ reports
def _fmt(v: Any, digits: int = 0, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and digits == 0:
        return f"{v:,.0f}{unit}"
    if isinstance(v, (int, float)):
        return f"{v:,.{digits}f}{unit}"
    return str(v)


def markdown(r: dict[str, Any]) -> str:
    s = r.get("systems", {})
    rate = r.get("latency_rate_per_s")
    m = r.get("machine", {})
    out = ["# Load benchmark", "",
           f"{m.get('date', '')}, {m.get('nproc')} cores ({m.get('cpu') or '?'}), Kafka {m.get('kafka') or '?'} "
           f"at {m.get('bootstrap')}, git {m.get('git') or '?'}; load average {m.get('loadavg_at_start')} at start "
           f"(host CPU {_fmt(m.get('host_cpu_busy_pct_before'), 0)}% busy before the run), "
           f"{m.get('loadavg_at_end')} at the end. Whole run: {r.get('duration_s')} s.", ""]
    w = r.get("workload", {})
    if w:
        out += [f"Workload: {w.get('events', 0):,} events ({w.get('mean_event_bytes')} bytes on average) from "
                f"{w.get('distinct_customers', 0):,} customers (Zipf-like popularity: the top 1% send "
                f"{100 * w.get('top_1pct_customers_share', 0):.0f}% of the events, the heaviest one "
                f"{100 * w.get('heaviest_customer_share', 0):.2f}%); {100 * w.get('feedback_share', 0):.1f}% are "
                f"channel feedback; the engine decides {w.get('predicted_actions', 0):,} actions and "
                f"{w.get('predicted_journey_entries', 0):,} journey entries on them. "
                f"{r['params'].get('partitions')} partitions everywhere.", ""]
    out += [f"| system | sustained events/s | event-to-output p50 / p95 / p99 ms at {_fmt(rate)}/s | consumed/s "
            f"in the latency phase | CPU s per 1k events | cores busy | broker CPU s per 1k | peak memory MiB "
            f"| others' cores busy |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in SYSTEM_ORDER:
        x = s.get(name)
        if not x:
            continue
        t = x.get("throughput", {})
        lat = x.get("latency", {})
        latency = (f"{_fmt(lat.get('p50_ms'))} / {_fmt(lat.get('p95_ms'))} / {_fmt(lat.get('p99_ms'))}"
                   if lat.get("latency_samples") else "-")
        err = " (failed: see JSON)" if x.get("error") else ""
        out.append(f"| {x.get('label', name)}{err} | {_fmt(t.get('events_per_s'))} | {latency} | "
                   f"{_fmt(lat.get('consumed_rate_per_s'))} | "
                   f"{_fmt(t.get('cpu_s_per_1k'), 3)} | {_fmt(t.get('cpu_cores_used'), 2)} | "
                   f"{_fmt(t.get('broker_cpu_s_per_1k'), 3)} | "
                   f"{_fmt((x.get('peak_memory_bytes') or 0) / MIB if x.get('peak_memory_bytes') else None, 0)} | "
                   f"{_fmt(t.get('other_cpu_cores_used'), 2)} |")
    pc = s.get("pure_core")
    if pc:
        e, wp = pc.get("engine", {}), pc.get("worker_path", {})
        out.append(f"| pure core, engine only (no Kafka), per core | {_fmt(e.get('events_per_s'))} | - | - | "
                   f"{_fmt(e.get('cpu_s_per_1k'), 3)} | 1 | - | - | - |")
        out.append(f"| pure core + the worker's codecs (no Kafka), per core | {_fmt(wp.get('events_per_s'))} | - | - | "
                   f"{_fmt(wp.get('cpu_s_per_1k'), 3)} | 1 | - | - | - |")
    out.append("")
    ratios = r.get("ratios", {})
    if ratios:
        out.append("Ratios of sustained throughput: " + ", ".join(f"{k} = {v:.3g}" for k, v in ratios.items()) + ".")
        out.append("")
    if pc:
        e = pc.get("engine", {})
        out += [f"Pure core: {e.get('events', 0):,} events; {100 * (e.get('enrolled_share') or 0):.1f}% of them enrolled a "
                f"customer in a journey ({_fmt(e.get('enrolled_us'), 1)} µs each) and the rest cost "
                f"{_fmt(e.get('other_us'), 1)} µs each; {_fmt(e.get('enrolled_events_per_s'))} enrolling events/s, "
                f"{_fmt(e.get('other_events_per_s'))} other events/s per core.", ""]
    eng_lat = (s.get("engine") or {}).get("latency") or {}
    if eng_lat:
        out += [f"Latency phase (engine): {eng_lat.get('events_sent', 0):,} events + {eng_lat.get('feedback_sent', 0):,} "
                f"feedback events from the simulated adapter in {eng_lat.get('warmup_s', 0) + eng_lat.get('measure_s', 0):.0f} s, "
                f"{eng_lat.get('latency_samples', 0):,} actions measured; consumed at "
                f"{_fmt(eng_lat.get('consumed_rate_per_s'))}/s with {_fmt(eng_lat.get('cpu_s_per_1k'), 3)} CPU s per 1k "
                f"events; lag {_fmt(eng_lat.get('lag_at_start_of_measurement'))} events at the start of the measurement, "
                f"{_fmt(eng_lat.get('lag_at_end_of_measurement'))} at its end; everything consumed in the end: "
                f"{eng_lat.get('all_consumed')}."]
        wr = eng_lat.get("worker_reported_event_to_action") or {}
        if wr.get("count"):
            out[-1] += (f" The worker's own histogram (event `ts` to the action queued on its producer) puts "
                        f"p50 / p95 / p99 at or below {_fmt(wr.get('p50_le_s'), 3)} / {_fmt(wr.get('p95_le_s'), 3)} / "
                        f"{_fmt(wr.get('p99_le_s'), 3)} s (bucket bounds).")
        out.append("")
    sc = r.get("scaling")
    if sc:
        out += [f"## Scale-out: engine worker processes on one broker ({sc.get('events', 0):,} events, "
                f"{sc.get('cores')} cores on this machine)", "",
                "| workers | events/s | scaling ratio | efficiency | CPU s per 1k | worker cores busy "
                "| broker cores busy | host CPU busy |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in sc.get("rows", []):
            if row.get("error"):
                out.append(f"| {row['workers']} | failed: {row['error'].splitlines()[0][:80]} | | | | | | |")
                continue
            out.append(f"| {row['workers']} | {_fmt(row.get('events_per_s'))} | {_fmt(row.get('scaling_ratio'), 2)} | "
                       f"{_fmt(row.get('efficiency'), 2)} | {_fmt(row.get('cpu_s_per_1k'), 3)} | "
                       f"{_fmt(row.get('cpu_cores_used'), 2)} | {_fmt(row.get('broker_cpu_cores_used'), 2)} | "
                       f"{_fmt(row.get('host_cpu_busy_pct'), 0)}% |")
        out += ["", f"Method: {sc.get('method')}.", ""]
        if (sc.get("cores") or 0) <= 2:
            out += [f"With {sc.get('cores')} cores shared by the workers, the broker and the benchmark itself, "
                    "more than about two busy worker processes cannot run faster; a ratio near 1 for 4 workers "
                    "here says nothing about 4 cores. Rerun on a bigger machine to measure real scale-out.", ""]
    if r.get("errors"):
        out += ["**Errors:** " + "; ".join(r["errors"]), ""]
    out += ["How to read this, and the method: `docs/benchmarks.md`. Raw numbers: `load.json`.", ""]
    return "\n".join(out)


def chart(r: dict[str, Any], path: Path) -> str | None:
    """A PNG with throughput, latency and scale-out. Returns why not, if it could not be drawn."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    s = r.get("systems", {})
    names, tps = [], []
    labels = {"passthrough": "aiokafka\npassthrough", "naive_faust": "naive Faust\nget+set",
              "engine": "engine\n(worker)"}
    for n in SYSTEM_ORDER:
        v = (s.get(n) or {}).get("throughput", {}).get("events_per_s")
        if v:
            names.append(labels[n])
            tps.append(v)
    pc = s.get("pure_core") or {}
    for key, label in (("engine", "pure core\n(1 core)"), ("worker_path", "core+codecs\n(1 core)")):
        v = (pc.get(key) or {}).get("events_per_s")
        if v:
            names.append(label)
            tps.append(v)
    sc = (r.get("scaling") or {}).get("rows", [])
    panels = 2 + (1 if sc else 0)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.6))
    ax = axes[0]
    colors = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#b8a2d8"][: len(names)]
    bars = ax.bar(names, tps, color=colors)
    ax.set_yscale("log")
    ax.set_ylabel("events/s (log scale)")
    ax.set_title("Sustained throughput")
    for b, v in zip(bars, tps):
        ax.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax = axes[1]
    rate = r.get("latency_rate_per_s")
    lnames, series = [], {"p50": [], "p95": [], "p99": []}
    for n in SYSTEM_ORDER:
        lat = (s.get(n) or {}).get("latency") or {}
        if lat.get("latency_samples"):
            lnames.append(labels[n])
            for p in series:
                series[p].append(max(1, lat.get(f"{p}_ms") or 1))
    width = 0.26
    for i, (p, vals) in enumerate(series.items()):
        xs = [j + (i - 1) * width for j in range(len(lnames))]
        ax.bar(xs, vals, width, label=p)
        for x, v in zip(xs, vals):
            ax.annotate(f"{v:,.0f}", (x, max(v, 1)), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(lnames)))
    ax.set_xticklabels(lnames, fontsize=8)
    values = [v for vals in series.values() for v in vals]
    if values and max(values) / max(1, min(values)) > 30:
        ax.set_yscale("log")
        ax.set_ylabel("ms (log scale)")
    else:
        ax.set_ylabel("ms")
    ax.set_title(f"Event-to-output latency at {rate:,.0f} events/s" if rate else "Event-to-output latency")
    ax.legend(fontsize=8)
    if sc:
        ax = axes[2]
        ks = [row["workers"] for row in sc if row.get("events_per_s")]
        vs = [row["events_per_s"] for row in sc if row.get("events_per_s")]
        if ks:
            ax.plot(ks, vs, "o-", label="measured")
            one = next((row["events_per_s"] for row in sc if row["workers"] == 1 and row.get("events_per_s")), None)
            if one:
                ax.plot(ks, [one * k for k in ks], "--", color="grey", label="linear")
            cores = (r.get("scaling") or {}).get("cores")
            if cores:
                ax.axvline(cores, color="#c44e52", linestyle=":", label=f"{cores} cores")
            for k, v in zip(ks, vs):
                ax.annotate(f"{v:,.0f}", (k, v), ha="left", va="bottom", fontsize=8)
        ax.set_xticks([row["workers"] for row in sc])
        ax.set_xlabel("worker processes")
        ax.set_ylabel("events/s")
        ax.set_title("Engine scale-out, one broker")
        ax.legend(fontsize=8)
    m = r.get("machine", {})
    fig.suptitle(f"orchestrator load benchmark - {m.get('nproc')} cores, {m.get('date', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_results(result: dict[str, Any], out: Path, name: str = "load") -> None:
    out.mkdir(parents=True, exist_ok=True)
    why = chart(result, out / f"{name}.png")
    if why:
        result["chart"] = f"not drawn: {why}"
    (out / f"{name}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    (out / f"{name}.md").write_text(markdown(result))


# ============================================================================ `load`: just the generator
async def load_main(args: argparse.Namespace) -> int:
    from orchestrator.config import Settings
    from orchestrator.core import load_policies
    from orchestrator.runtime.topics import ensure_topics
    settings = Settings.from_env()
    channels = load_policies(settings.policies).channels
    # The worker's topics, as the worker would create them, so the load can start first.
    await ensure_topics(settings, channels)
    shoppers = Shoppers(seed=args.seed, customers=args.customers, zipf_s=args.zipf_s, zipf_q=args.zipf_q,
                        tag=args.tag or uuid.uuid4().hex[:6])
    producer = make_producer(linger_ms=5 if args.rate else 20)
    await producer.start()
    adapter = Adapter(producer, settings.events_topic) if not args.no_feedback else None
    sink = OutputSink([settings.topic(f"actions.{c}") for c in channels],
                      on_record=adapter.on_action if adapter else None)
    await sink.start()
    if adapter is not None:
        adapter.start()
    progress = Progress()
    limit = args.events or None
    produced = [0]

    def source() -> dict[str, Any] | None:
        if limit is not None and produced[0] >= limit:
            return None
        produced[0] += 1
        return shoppers.next()

    history: deque[tuple[float, int, int]] = deque(maxlen=50)

    def tick(sent: int, el: float) -> None:
        fb = adapter.sent if adapter else 0
        history.append((el, sent + fb, sink.count))
        t0, s0, a0 = history[0]
        dt = max(1e-6, el - t0)
        recent = sorted(l for ts, l in sink.samples[-2000:])
        p50, p99 = percentile(recent, 50), percentile(recent, 99)
        progress.show(f"in {(sent + fb - s0) / dt:,.0f}/s: events {sent:,} + feedback {fb:,} | actions {sink.count:,} "
                      f"({(sink.count - a0) / dt:,.0f}/s) | event-to-action p50 {_fmt(p50)} ms p99 {_fmt(p99)} ms "
                      f"| {el:,.0f}s")

    note(f"load: {'flat out' if not args.rate else f'{args.rate:,.0f} events/s'} to {settings.events_topic} "
         f"at {settings.bootstrap}" + ("" if adapter else " (no feedback)"))
    try:
        sent = await paced(producer, settings.events_topic, source, rate=args.rate,
                           duration_s=args.duration if args.duration else float("inf"),
                           extra=(lambda: adapter.sent) if adapter else (lambda: 0), on_tick=tick)
        await asyncio.sleep(1.0)
    except KeyboardInterrupt:
        sent = produced[0]
    finally:
        if adapter is not None:
            await adapter.stop()
        await sink.stop()
        await producer.stop()
        progress.done()
    lat = sorted(l for _, l in sink.samples)
    print(orjson.dumps({"events_sent": sent, "feedback_sent": adapter.sent if adapter else 0, "actions": sink.count,
                        "actions_by_topic": dict(sink.by_topic), "p50_ms": percentile(lat, 50),
                        "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99)},
                       option=orjson.OPT_INDENT_2).decode())
    return 0


def core_main(args: argparse.Namespace) -> int:
    pc = load_pure_core()
    shoppers = Shoppers(seed=args.seed, customers=args.customers, zipf_s=args.zipf_s, zipf_q=args.zipf_q, tag="core")
    engine = load_engine(ROOT / "journeys", ROOT / "policies.yaml")
    events, stats = build_backlog(shoppers, args.events, engine)
    res = pc.measure(events, journeys=ROOT / "journeys", policies=ROOT / "policies.yaml")
    print(orjson.dumps({"workload": stats, "pure_core": res}, option=orjson.OPT_INDENT_2).decode())
    return 0


# ============================================================================ command line
def _workload_args(p: argparse.ArgumentParser, events: int) -> None:
    p.add_argument("--events", type=int, default=events, help=f"events in the backlog (default {events:,})")
    p.add_argument("--customers", type=int, default=200_000, help="customer population (default 200,000)")
    p.add_argument("--zipf-s", type=float, default=1.0, help="popularity exponent s of 1/(rank+q)^s (default 1.0)")
    p.add_argument("--zipf-q", type=float, default=20.0, help="popularity offset q (default 20)")
    p.add_argument("--seed", type=int, default=42)


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="orchestrator bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("run", help="the side-by-side benchmark (default)")
    _workload_args(r, 120_000)
    r.add_argument("--systems", default="engine,passthrough,naive_faust,pure_core",
                   help="which systems (default: engine,passthrough,naive_faust,pure_core)")
    r.add_argument("--partitions", type=int, default=8)
    r.add_argument("--drain-cap", type=float, default=90.0,
                   help="stop a drain this many seconds after the first output (default 90)")
    r.add_argument("--rate", type=float, default=0.0,
                   help="events/s of the latency phases (default: 50%% of the engine's sustained rate)")
    r.add_argument("--latency-cap-rate", type=float, default=20_000.0, help=argparse.SUPPRESS)
    r.add_argument("--warmup", type=float, default=5.0, help="seconds of paced load before measuring (default 5)")
    r.add_argument("--latency-s", type=float, default=30.0, help="seconds of measured paced load (default 30)")
    r.add_argument("--scale", type=_int_list, default=[1, 2, 4], help="worker counts for scale-out (default 1,2,4; "
                                                                    "'' to skip)")
    r.add_argument("--scale-events", type=int, default=40_000, help="backlog of each scale-out run (default 40,000)")
    r.add_argument("--quick", action="store_true", help="a short smoke run (20k events, 10 s latency, 10k scale-out)")
    r.add_argument("--profile", action="store_true",
                   help="py-spy the engine worker during its drain (pip install py-spy); summary in the JSON")
    r.add_argument("--profile-s", type=float, default=20.0, help="seconds of profile (default 20)")
    r.add_argument("--keep", action="store_true", help="keep topics, data dirs and logs")
    r.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    r.add_argument("--name", default="load", help="file name of the results (default load: load.json/.md/.png)")
    ld = sub.add_parser("load", help="only the load generator (+ adapter) against ORCH_TOPIC_PREFIX's worker")
    _workload_args(ld, 0)
    ld.add_argument("--rate", type=float, default=1000.0, help="events/s including feedback; 0 = flat out (default 1000)")
    ld.add_argument("--duration", type=float, default=60.0, help="seconds (default 60; 0 = until --events or Ctrl-C)")
    ld.add_argument("--no-feedback", action="store_true", help="do not run the simulated channel adapter")
    ld.add_argument("--tag", default="", help="event id tag (default random; the same tag re-sends the same ids)")
    c = sub.add_parser("core", help="only the pure-core measurement (no Kafka)")
    _workload_args(c, 200_000)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "load", "core", "-h", "--help"):
        argv = ["run", *argv]
    args = parser().parse_args(argv)
    if args.cmd == "core":
        return core_main(args)
    if not broker_reachable():
        print(f"no Kafka broker at {bootstrap()}: start one (`make kafka-up`) or set ORCH_BOOTSTRAP", file=sys.stderr)
        return 2
    if args.cmd == "load":
        try:
            return asyncio.run(load_main(args))
        except KeyboardInterrupt:
            return 130
        except BenchError as exc:
            print(f"bench load: {exc}", file=sys.stderr)
            return 1
    if args.quick:
        args.events, args.latency_s, args.warmup, args.scale_events = 20_000, 10.0, 3.0, 10_000
        args.drain_cap = min(args.drain_cap, 60.0)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - {"engine", "passthrough", "naive_faust", "pure_core"}
    if unknown:
        print(f"unknown systems: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    try:
        result = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    write_results(result, args.out, args.name)
    print(markdown(result))
    note(f"results: {args.out / (args.name + '.json')}, .md, .png")
    return 1 if result.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
