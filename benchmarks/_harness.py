"""Small helpers for benchmarks: a worker subprocess, its metrics and memory, bulk produce,
reading topics, and cleaning up the benchmark's own topics.

Deliberately independent of ``tests/`` (benchmarks must not depend on the test suite).
Every wait here is bounded by a deadline; polling loops sleep at most 0.5 s.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from orchestrator.testing.childproc import ChildProcess
from orchestrator.config import default_bootstrap  # noqa: F401 - re-exported
from orchestrator.testing.net import broker_reachable, free_port  # noqa: F401 - re-exported
from orchestrator.observability.scrape import scrape_port, total  # noqa: F401 - re-exported

BOOTSTRAP = default_bootstrap()
POLL_S = 0.25                      # polling interval of every wait loop (never above 0.5 s)


class BenchError(RuntimeError):
    """A benchmark step failed or a bounded wait ran out."""


# ------------------------------------------------------------------------------------- basics




scrape = scrape_port


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... of a process from /proc/<pid>/status, in bytes."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if key.startswith("Vm") and len(parts) == 2 and parts[1] == "kB":
                    out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads) from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole host since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            values = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)      # idle + iowait
    all_ = sum(values[:8])                                          # guest time is already in user
    tick = os.sysconf("SC_CLK_TCK")
    return (all_ - idle) / tick, all_ / tick


def dir_bytes(path: Path) -> int:
    size = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return size


class Progress:
    """One live status line on stderr (rewritten in place on a terminal, every 5 s otherwise)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._width = 0

    def show(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            pad = max(0, self._width - len(text))
            sys.stderr.write("\r" + text + " " * pad)
            sys.stderr.flush()
            self._width = len(text)
        elif force or now - self._last >= 5.0:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            self._last = now

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


# ------------------------------------------------------------------------------------- the worker
class Worker(ChildProcess):
    """``python -m orchestrator worker`` in a subprocess with its own prefix, data dir and port."""

    def __init__(self, workdir: Path, *, journeys: Path, policies: Path, partitions: int = 8,
                 prefix: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.prefix = prefix or f"bench-{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.data_dir = workdir / f"data-{self.prefix}"
        self.partitions = partitions
        env = {**os.environ, "ORCH_BOOTSTRAP": BOOTSTRAP, "ORCH_TOPIC_PREFIX": self.prefix,
               "ORCH_PARTITIONS": str(partitions), "ORCH_DATA_DIR": str(self.data_dir),
               "ORCH_WEB_PORT": str(self.port), "ORCH_JOURNEYS": str(journeys),
               "ORCH_POLICIES": str(policies), **(extra_env or {})}
        super().__init__([sys.executable, "-m", "orchestrator", "worker"], env, workdir / f"worker-{self.prefix}.log")

    def topic(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    def start(self, timeout_s: float = 120.0) -> "Worker":
        super().start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if scrape(self.port) is not None:
                return self
            time.sleep(POLL_S)
        raise BenchError(f"worker not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.exit_code() is not None:
            raise BenchError(f"worker exited with {self.exit_code()}:\n{self.log_tail()}")

    def metrics(self) -> dict[str, float]:
        return scrape(self.port) or {}

    def memory(self) -> dict[str, int]:
        return proc_status(self.pid)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid) or 0.0

    def remove_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------- Kafka
def make_producer() -> AIOKafkaProducer:
    """A throughput producer: batches of up to 512 KiB, 20 ms linger, leader acks."""
    return AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks=1, linger_ms=20,
                            max_batch_size=512 * 1024, max_request_size=2 * 1024 * 1024,
                            request_timeout_ms=60_000)


async def produce_many(producer: AIOKafkaProducer, topic: str, count: int,
                       make: Callable[[int], tuple[bytes, bytes]], *,
                       on_progress: Callable[[int], None] | None = None, window: int = 20_000,
                       timeout_s: float = 600.0) -> None:
    """Send ``count`` messages ``make(i) -> (key, value)`` with ``send()`` futures (no per-message
    wait); at most ``window`` unacknowledged at once. ``on_progress(acked)`` after each window."""
    deadline = time.monotonic() + timeout_s
    pending: list[asyncio.Future[Any]] = []
    acked = 0
    for i in range(count):
        key, value = make(i)
        pending.append(await producer.send(topic, value=value, key=key))
        if len(pending) >= window:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"producing to {topic}: {acked} of {count} acknowledged in {timeout_s:.0f}s")
            await asyncio.wait_for(asyncio.gather(*pending), timeout=remaining)
            acked += len(pending)
            pending.clear()
            if on_progress is not None:
                on_progress(acked)
    if pending:
        await asyncio.wait_for(asyncio.gather(*pending), timeout=max(1.0, deadline - time.monotonic()))
        acked += len(pending)
    if on_progress is not None:
        on_progress(acked)


async def end_offsets(topics: list[str], timeout_s: float = 60.0) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topics, timeout_s)
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str], timeout_s: float) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout_s
    while True:
        tps = []
        missing = []
        for t in topics:
            parts = consumer.partitions_for_topic(t)
            if not parts:
                missing.append(t)
            else:
                tps.extend(TopicPartition(t, p) for p in sorted(parts))
        if not missing:
            return tps
        if time.monotonic() > deadline:
            raise BenchError(f"no metadata for topics {missing} within {timeout_s:.0f}s")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(POLL_S)


async def read_topics(topics: list[str], *, start: dict[TopicPartition, int] | None = None,
                      keep: Callable[[bytes], bool] | None = None,
                      until: Callable[[list[tuple[str, int, bytes]]], bool] | None = None,
                      timeout_s: float = 120.0,
                      on_progress: Callable[[int], None] | None = None) -> list[tuple[str, int, bytes]]:
    """Read ``topics`` (every partition, from ``start`` offsets or the beginning) up to their end
    offsets; if ``until(records)`` is given, keep reading new records until it holds.

    Returns (topic, timestamp ms, raw value) for each record whose value passes ``keep``.
    Raises :class:`BenchError` if ``until`` does not hold within ``timeout_s``.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    records: list[tuple[str, int, bytes]] = []
    try:
        deadline = time.monotonic() + timeout_s
        tps = await _partitions(consumer, topics, timeout_s)
        consumer.assign(tps)
        for tp in tps:
            if start is not None and tp in start:
                consumer.seek(tp, start[tp])
            else:
                await consumer.seek_to_beginning(tp)
        ends = await consumer.end_offsets(tps)
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=50_000)
            for msgs in batch.values():
                for m in msgs:
                    if m.value is not None and (keep is None or keep(m.value)):
                        records.append((m.topic, m.timestamp, m.value))
            if on_progress is not None:
                on_progress(len(records))
            if not batch:
                caught_up = True
                for tp in tps:
                    if await consumer.position(tp) < ends[tp]:
                        caught_up = False
                        break
                if caught_up:
                    if until is None or until(records):
                        return records
                    ends = await consumer.end_offsets(tps)
            if time.monotonic() > deadline:
                if until is None:
                    raise BenchError(f"reading {topics}: not at the end offsets within {timeout_s:.0f}s "
                                     f"({len(records)} records read)")
                raise BenchError(f"reading {topics}: condition not met within {timeout_s:.0f}s "
                                 f"({len(records)} records read)")
    finally:
        await consumer.stop()


async def delete_own_topics(prefix: str, timeout_s: float = 60.0) -> list[str]:
    """Delete the topics and the consumer group of one benchmark worker, and nothing else:
    ``<prefix>.*`` (its topics) and ``<prefix>-orchestrator-*`` (Faust's changelogs)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        ours = sorted(t for t in await admin.list_topics()
                      if t.startswith(f"{prefix}.") or t.startswith(f"{prefix}-orchestrator-"))
        if ours:
            await admin.delete_topics(ours, timeout_ms=int(timeout_s * 1000))
        try:
            await admin.delete_consumer_groups([f"{prefix}-orchestrator"])
        except Exception:  # the group may already be gone; not worth failing a benchmark over
            pass
        return ours
    finally:
        await admin.close()
