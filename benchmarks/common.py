"""What every benchmark shares: the one progress line, the one percentile, machine facts, the
costs of a process, child processes, the engine worker's environment and the Kafka topic helpers.

Deliberately independent of ``tests/`` (benchmarks must not depend on the test suite). Every wait
here is bounded by a deadline; polling loops sleep at most 0.5 s. Everything a benchmark creates on
the broker is named after its own prefix, so cleaning up touches nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Iterator
from typing import Any, Callable

from orchestrator.config import default_bootstrap as bootstrap
from orchestrator.testing.childproc import ChildProcess
from orchestrator.testing.net import broker_reachable, free_port  # noqa: F401 - re-exported
from orchestrator.testing.worker import WORKER_ARGV, worker_env
from orchestrator.observability.scrape import scrape_port as scrape  # noqa: F401 - re-exported
from orchestrator.observability.scrape import total  # noqa: F401 - re-exported
from orchestrator.observability.progress import ProgressLine as Progress  # noqa: F401 - the one progress line

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
RESULTS = BENCH_DIR / "results"
MIB = 1024 * 1024
POLL_S = 0.2                       # polling interval of every wait loop (never above 0.5 s)
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class BenchError(RuntimeError):
    """A benchmark step failed or a bounded wait ran out."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ------------------------------------------------------------------------------------- output
def note(text: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


@contextlib.contextmanager
def without_full_collections() -> Iterator[None]:
    """The benchmark process's own cyclic garbage collector without full collections while a paced
    load runs (young and middle ones go on); one full collection at the end.

    A full collection walks every container object the process holds, and a paced phase adds to them
    as it goes (its events, kept so that every system gets the same ones: a dict or two per event),
    so its pauses grew with the phase: in a latency phase at 12,867 events/s the benchmark's event loop
    stalled for up to 340 ms every 1.7 s or so, the paced producer then sent the events it owed in
    one burst of 3,000-4,000, and every system's tail measured those bursts and the late arrival
    stamps: the aiokafka passthrough's p99 was 220 ms while its outputs' broker timestamps were at
    most 30 ms after the events'. With this, in the same phase, the loop was late by at most 10 ms. (``timeit``
    turns the collector off while it times, for the same reason.)
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()                      # what exists now is never walked again during the phase
    gc.set_threshold(thresholds[0], thresholds[1], 1_000_000_000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        gc.collect()


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list; ``None`` for an empty one."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# ------------------------------------------------------------------------------------- the machine
def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process (all its threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        # After the command name: state is field 3, utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_mem(pid: int) -> dict[str, int]:
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


def host_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole host since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            values = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)      # idle + iowait
    total_ = sum(values[:8])                                        # guest time is already in user
    return (total_ - idle) / CLK_TCK, total_ / CLK_TCK


def loadavg() -> str | None:
    """1/5/15-minute load average: other work on the host (the broker too) skews the numbers."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def dir_bytes(path: Path) -> int:
    size = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return size


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
    wanted = {f"socket:[{i}]" for i in inodes}
    for name in os.listdir("/proc") if wanted else ():
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


def machine_facts(libraries: tuple[str, ...], *, settle_s: float = 2.0) -> dict[str, Any]:
    """Where a result was measured: cores, CPU, memory, Kafka and library versions, git revision,
    load average, and how busy the host was over ``settle_s`` seconds before anything started."""
    facts: dict[str, Any] = {"nproc": os.cpu_count(), "python": platform.python_version(),
                             "platform": platform.platform(), "bootstrap": bootstrap()}
    try:
        m = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        facts["memory_bytes"] = int(m.group(1)) * 1024 if m else None
        cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        facts["cpu"] = cpu.group(1).strip() if cpu else None
    except OSError:
        pass
    from orchestrator.localkafka.install import LocalKafkaError, kafka_version
    try:
        facts["kafka"] = kafka_version()     # what `orchestrator kafka up` runs (ORCH_BOOTSTRAP may be another)
    except LocalKafkaError:
        facts["kafka"] = None
    from importlib.metadata import PackageNotFoundError, version
    facts["libraries"] = {}
    for name in libraries:
        try:
            facts["libraries"][name] = version(name)
        except PackageNotFoundError:
            facts["libraries"][name] = None
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.rstrip("\n")
        facts["git"] = (rev + ("+dirty" if dirty else "")) if rev else None
        facts["git_modified"] = [line[3:] for line in dirty.splitlines()]
    except (OSError, subprocess.SubprocessError):
        facts["git"] = None
    facts["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    facts["loadavg_at_start"] = loadavg()
    if settle_s > 0:
        a = host_cpu_s()
        time.sleep(settle_s)
        b = host_cpu_s()
        if b[1] > a[1]:
            # Before anything of the benchmark runs: what else keeps this host busy.
            facts["host_cpu_busy_pct_before"] = round(100 * (b[0] - a[0]) / (b[1] - a[1]), 1)
    return facts


# ------------------------------------------------------------------------------------- processes
class Proc(ChildProcess):
    """A process of a system under test, run from the repository root, with its log, CPU time and
    memory (the last reading is kept, so the peak survives the process)."""

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


@contextlib.contextmanager
def checkout(rev: str, where: Path) -> Iterator[Path]:
    """Git revision ``rev`` of this repository checked out (detached) at ``where``, removed afterwards;
    or, if ``rev`` is a folder, that tree as it is (e.g. a checkout whose hot path was compiled with
    ``python setup.py build_ext --inplace``: a fresh checkout runs plain Python)."""
    if Path(rev).is_dir():
        yield Path(rev).resolve()
        return
    added = subprocess.run(["git", "worktree", "add", "--detach", str(where), rev], cwd=ROOT,
                           capture_output=True, text=True)
    if added.returncode != 0:
        raise SystemExit(f"cannot check out {rev}: {added.stderr.strip() or added.stdout.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, capture_output=True)


def run_in_tree(script: Path, tree: Path, args: list[str], what: str) -> dict[str, Any]:
    """Run the benchmark ``script`` (a file of this tree) in a fresh interpreter with ``tree``'s
    ``orchestrator`` first on ``PYTHONPATH`` (a :func:`checkout` or this tree); its last line of
    output, as JSON. ``what`` names the measurement in the error if it fails."""
    import orjson
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(script), *args, "--expect-tree", str(tree)],
                          cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} in {tree} failed:\n{(done.stderr or done.stdout).strip()[-2000:]}")
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def clean_env() -> dict[str, str]:
    """This environment without any ``ORCH_`` setting, pointed at the benchmark's broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env["ORCH_BOOTSTRAP"] = bootstrap()
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker_proc(name: str, workdir: Path, *, prefix: str, partitions: int, data_dir: Path, port: int,
                journeys: Path, policies: Path, log_path: Path, extra: dict[str, str] | None = None) -> Proc:
    """``python -m orchestrator worker`` with its own prefix, data dir and metrics port."""
    env = worker_env(prefix=prefix, partitions=partitions, data_dir=data_dir, web_port=port, journeys=journeys,
                     policies=policies, base=clean_env(), extra=extra)
    return Proc(name, list(WORKER_ARGV), env, log_path)


# ------------------------------------------------------------------------------------- Kafka
def admin(timeout_s: float = 60.0):  # -> AIOKafkaAdminClient
    from aiokafka.admin import AIOKafkaAdminClient
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap(), request_timeout_ms=int(timeout_s * 1000))


def make_producer(*, linger_ms: int = 5, acks: Any = 1):  # -> AIOKafkaProducer
    """A throughput producer: batches of up to 512 KiB, leader acks by default."""
    from aiokafka import AIOKafkaProducer
    return AIOKafkaProducer(bootstrap_servers=bootstrap(), acks=acks, linger_ms=linger_ms,
                            max_batch_size=512 * 1024, max_request_size=2 * 1024 * 1024, request_timeout_ms=60_000)


async def create_topics(topics: dict[str, int], *, configs: dict[str, dict[str, str]] | None = None,
                        timeout_s: float = 60.0) -> None:
    """Create the missing ``{topic: partitions}`` (with per-topic ``configs``) and wait until every
    partition has a leader: a freshly created topic can refuse writes for a moment."""
    from aiokafka.errors import TopicAlreadyExistsError
    from aiokafka.admin import NewTopic
    client = admin(timeout_s)
    await client.start()
    try:
        existing = set(await client.list_topics())
        new = [NewTopic(t, num_partitions=p, replication_factor=1, topic_configs=(configs or {}).get(t, {}))
               for t, p in topics.items() if t not in existing]
        if new:
            try:
                await client.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        deadline = time.monotonic() + timeout_s
        while True:
            ready = set()
            try:
                for t in await client.describe_topics(list(topics)):
                    parts = t.get("partitions") or []
                    if t.get("error_code") == 0 and len(parts) >= topics[t["topic"]] \
                            and all(p.get("leader", -1) >= 0 for p in parts):
                        ready.add(t["topic"])
            except Exception:  # noqa: BLE001 - metadata not there yet: ask again
                pass
            if ready >= set(topics):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"topics {sorted(set(topics) - ready)} have no leaders after {timeout_s:.0f}s")
            await asyncio.sleep(POLL_S)
    finally:
        await client.close()


async def delete_prefix(prefix: str, *, also: tuple[str, ...] = (), timeout_s: float = 60.0) -> list[str]:
    """Delete this benchmark's topics (``<prefix>.*``, ``<prefix>-*`` and any name starting with one
    of ``also``) and its consumer groups (``<prefix>-*``), nothing else."""
    client = admin(timeout_s)
    await client.start()
    try:
        starts = (f"{prefix}.", f"{prefix}-", *also)
        ours = sorted(t for t in await client.list_topics() if t.startswith(starts))
        if ours:
            await client.delete_topics(ours, timeout_ms=int(timeout_s * 1000))
        try:  # best effort: aiokafka has no public call for it
            from aiokafka.protocol.admin import DeleteGroupsRequest
            groups = [g[0] for g in await client.list_consumer_groups() if str(g[0]).startswith(f"{prefix}-")]
            for g in groups:
                await client._send_request(DeleteGroupsRequest([g]), await client.find_coordinator(g))
        except Exception:  # noqa: BLE001
            pass
        return ours
    finally:
        await client.close()


async def group_state(group: str) -> tuple[str, int] | None:
    """(state, members) of a consumer group, or None if it cannot be described."""
    client = admin()
    await client.start()
    try:
        for resp in await client.describe_consumer_groups([group]):
            for g in resp.groups:
                if g[1] == group:
                    return str(g[2]), len(g[5])
    except Exception:  # noqa: BLE001
        return None
    finally:
        await client.close()
    return None


async def partitions_of(consumer: Any, topics: list[str], timeout_s: float = 60.0) -> list[Any]:
    """Every partition of ``topics`` as the consumer's metadata knows them (asking again until it does)."""
    from aiokafka import TopicPartition
    deadline = time.monotonic() + timeout_s
    while True:
        tps, missing = [], []
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


async def end_offsets(topics: list[str], timeout_s: float = 60.0) -> dict[Any, int]:
    from aiokafka import AIOKafkaConsumer
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(), enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(await partitions_of(consumer, topics, timeout_s)))
    finally:
        await consumer.stop()


async def read_topics(topics: list[str], *, start: dict[Any, int] | None = None,
                      stop: dict[Any, int] | None = None,
                      keep: Callable[[bytes], bool] | None = None,
                      until: Callable[[list[Any]], bool] | None = None,
                      each: Callable[[Any], None] | None = None, timeout_s: float = 120.0) -> list[Any]:
    """Read ``topics`` (every partition, from ``start`` offsets or the beginning) up to their end
    offsets; if ``until(records)`` is given, keep reading new records until it holds. With ``stop``
    (offsets by partition, e.g. earlier end offsets), read each partition up to that offset only,
    excluded, however much is appended meanwhile: a slice of a live topic (``until`` is not used then).

    Returns the aiokafka records (tombstones included) whose value passes ``keep``; with ``each``,
    hands every record to it instead and keeps none (a big topic is not held in memory). Raises
    :class:`BenchError` if the end (or ``until``) is not reached within ``timeout_s``.
    """
    from aiokafka import AIOKafkaConsumer
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(), enable_auto_commit=False, isolation_level="read_committed",
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 * MIB,
                                fetch_max_bytes=64 * MIB)
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        tps = await partitions_of(consumer, topics, timeout_s)
        consumer.assign(tps)
        for tp in tps:
            if start is not None and tp in start:
                consumer.seek(tp, start[tp])
            else:
                await consumer.seek_to_beginning(tp)
        ends = await consumer.end_offsets(tps)
        if stop is not None:
            ends = {tp: stop.get(tp, end) for tp, end in ends.items()}
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=50_000)
            for tp, msgs in batch.items():
                if stop is not None:
                    msgs = [m for m in msgs if m.offset < ends[tp]]
                if each is not None:
                    for m in msgs:
                        each(m)
                else:
                    records.extend(m for m in msgs if keep is None or (m.value is not None and keep(m.value)))
            if stop is not None:
                # A live topic never runs dry: stop at the offsets, not at an empty fetch.
                reached = [tp for tp in tps if await consumer.position(tp) >= ends[tp]]
                if len(reached) == len(tps):
                    return records
                consumer.pause(*reached)
            elif not batch:
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= ends[tp] for pos, tp in zip(positions, tps)):
                    if until is None or until(records):
                        return records
                    ends = await consumer.end_offsets(tps)
            if time.monotonic() > deadline:
                what = "not at the end offsets" if until is None else "condition not met"
                raise BenchError(f"reading {topics}: {what} within {timeout_s:.0f}s ({len(records)} records read)")
    finally:
        await consumer.stop()
