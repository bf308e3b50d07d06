"""The systems under test, each run as child processes with their own topic prefix and consumer
group: the aiokafka passthrough (the ceiling), the Quix Streams apps (the Python peer to beat),
naive Faust (the historical row) and the engine's workers (a black box: environment, topics,
``/metrics``).

Every system reports a consumed count while it runs: the worker's ``orch_events_in_total``, the end
offsets of a baseline's output topic (one output per event), or, for an app that writes less than
one output per event, its group's committed offsets.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import POLL_S, BenchError, Proc, bootstrap, clean_env, free_port, scrape, total, worker_proc
from benchmarks.load.kafkaio import GroupOffsets
from benchmarks.workload import JOURNEYS, POLICIES
from orchestrator.config import Topics

EVENTS_IN = "orch_events_in_total{"
# Outputs stamped by the broker: Quix copies the input record's timestamp to its outputs, so with
# CreateTime a window over output timestamps would measure the production of the backlog.
LOG_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


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

    @property
    def group(self) -> str:
        """The consumer group whose committed offsets on the input topic are the common yardstick."""
        raise NotImplementedError

    def topics_to_create(self) -> dict[str, int]:
        return {self.input_topic: self.partitions}

    def topic_configs(self) -> dict[str, dict[str, str]]:
        return {}

    def output_topics(self) -> list[str]:
        return [f"{self.prefix}.out"]

    def timed_output(self) -> tuple[str, bool] | None:
        """A topic whose records' timestamps (LogAppendTime) time the drain to the millisecond, and
        whether it holds exactly one record per event (else its records are spread evenly through
        the backlog, so their share tells how much of it was consumed)."""
        return None

    def also_delete(self) -> tuple[str, ...]:
        """Name prefixes of topics the system creates outside its own prefix."""
        return ()

    def child(self, module: str, env: dict[str, str]) -> Proc:
        p = Proc(self.name, [sys.executable, "-m", module], {**clean_env(), "BENCH_BOOTSTRAP": bootstrap(), **env},
                 self.workdir / f"{self.prefix}.log")
        self.procs = [p]
        return p

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

    def topic_configs(self) -> dict[str, dict[str, str]]:
        return {f"{self.prefix}.out": LOG_APPEND_TIME}

    def timed_output(self) -> tuple[str, bool] | None:
        return f"{self.prefix}.out", True

    async def count(self) -> float:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(), enable_auto_commit=False, isolation_level="read_committed")
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

    @property
    def group(self) -> str:
        return f"{self.prefix}-passthrough"

    async def start(self) -> None:
        self.child("benchmarks.passthrough", {"BENCH_IN": self.input_topic, "BENCH_OUT": f"{self.prefix}.out",
                                              "BENCH_GROUP": self.group}).start()


class NaiveFaust(OutputCounted):
    name = "naive_faust"
    label = "naive Faust (table get+set; historical)"

    @property
    def group(self) -> str:
        return f"{self.prefix}-naive"            # Faust's consumer group is its app id

    async def start(self) -> None:
        self.child("benchmarks.naive_faust", {
            "BENCH_IN": self.input_topic, "BENCH_OUT": f"{self.prefix}.out", "BENCH_APP_ID": self.group,
            "BENCH_PARTITIONS": str(self.partitions),
            "BENCH_DATA_DIR": str(self.workdir / f"data-{self.prefix}")}).start()


class QuixNaive(OutputCounted):
    name = "quix_naive"
    label = "naive Quix Streams (state get+set)"

    @property
    def group(self) -> str:
        return f"{self.prefix}-quixnaive"

    def also_delete(self) -> tuple[str, ...]:
        return (f"changelog__{self.group}", f"repartition__{self.group}")

    async def start(self) -> None:
        self.child("benchmarks.quix_naive", {
            "BENCH_IN": self.input_topic, "BENCH_OUT": f"{self.prefix}.out", "BENCH_GROUP": self.group,
            "BENCH_STATE_DIR": str(self.workdir / f"data-{self.prefix}")}).start()


class QuixJourney(System):
    """One action per journey entry, not one output per event: progress is the group's committed
    offsets (Quix commits every second, too coarse to time a drain of a few seconds), and the drain
    is timed by its actions, which are spread evenly through the backlog (an entry is a cart of 50
    or more, in sessions of many customers interleaved at random)."""

    name = "quix_journey"
    label = "Quix Streams, one cart-recovery journey"

    def __init__(self, workdir: Path, prefix: str, partitions: int) -> None:
        super().__init__(workdir, prefix, partitions)
        self._offsets: GroupOffsets | None = None

    @property
    def group(self) -> str:
        return f"{self.prefix}-quixjourney"

    def topics_to_create(self) -> dict[str, int]:
        return {self.input_topic: self.partitions, f"{self.prefix}.actions": self.partitions}

    def topic_configs(self) -> dict[str, dict[str, str]]:
        return {f"{self.prefix}.actions": LOG_APPEND_TIME}

    def output_topics(self) -> list[str]:
        return [f"{self.prefix}.actions"]

    def timed_output(self) -> tuple[str, bool] | None:
        return f"{self.prefix}.actions", False

    def also_delete(self) -> tuple[str, ...]:
        return (f"changelog__{self.group}", f"repartition__{self.group}")

    async def start(self) -> None:
        self.child("benchmarks.quix_journey", {
            "BENCH_IN": self.input_topic, "BENCH_OUT": f"{self.prefix}.actions", "BENCH_GROUP": self.group,
            "BENCH_STATE_DIR": str(self.workdir / f"data-{self.prefix}")}).start()

    async def count(self) -> float:
        if self._offsets is None:
            self._offsets = GroupOffsets(self.group, self.input_topic, self.partitions)
            await self._offsets.open()
        return await self._offsets.committed()

    async def close(self) -> None:
        if self._offsets is not None:
            await self._offsets.close()
            self._offsets = None


class EngineWorkers(System):
    """``python -m orchestrator worker`` x N: a black box (env, topics, ``/metrics``)."""

    name = "engine"
    label = "engine (orchestrator worker)"
    guarantee = "at-least-once"               # ORCH_PROCESSING_GUARANTEE of the workers

    def __init__(self, workdir: Path, prefix: str, partitions: int, *, workers: int = 1,
                 journeys: Path = JOURNEYS, policies: Path = POLICIES) -> None:
        super().__init__(workdir, prefix, partitions)
        self.workers, self.journeys, self.policies = workers, journeys, policies
        self.partitioner = "murmur2"              # ORCH_PRODUCER_PARTITIONER of the workers
        self.ports: list[int] = []
        self._last: dict[int, float] = {}

    def output_topics(self) -> list[str]:
        from orchestrator.core import load_policies
        channels = load_policies(str(self.policies)).channels
        return [Topics(self.prefix).actions(c) for c in channels]

    @property
    def group(self) -> str:
        return f"{self.prefix}-orchestrator"

    @property
    def changelog_topic(self) -> str:
        return Topics(self.prefix).changelog

    @property
    def keyed_topic(self) -> str:
        return Topics(self.prefix).internal_events

    async def start(self, ready_timeout_s: float = 120.0) -> None:
        self.procs, self.ports = [], []
        for i in range(self.workers):
            port = free_port()
            self.procs.append(worker_proc(f"worker-{i}", self.workdir, prefix=self.prefix, partitions=self.partitions,
                                          data_dir=self.workdir / f"data-{self.prefix}-{i}", port=port,
                                          journeys=self.journeys, policies=self.policies,
                                          log_path=self.workdir / f"{self.prefix}-{i}.log",
                                          extra={"ORCH_PRODUCER_PARTITIONER": self.partitioner,
                                                 "ORCH_PROCESSING_GUARANTEE": self.guarantee}))
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
        """Events decided by the workers; the last value read survives them (after a stop)."""
        async def one(i: int) -> float:
            m = await asyncio.to_thread(scrape, self.ports[i], 2.0)
            if m is not None:
                self._last[i] = total(m, EVENTS_IN)
            return self._last.get(i, 0.0)
        return sum(await asyncio.gather(*(one(i) for i in range(len(self.ports)))))


class EngineExactlyOnce(EngineWorkers):
    """The same worker with ``ORCH_PROCESSING_GUARANTEE=exactly-once`` (a transaction per input partition
    and batch; its outputs read committed)."""

    name = "engine_eos"
    label = "engine, exactly-once"
    guarantee = "exactly-once"


SYSTEMS: dict[str, type[System]] = {"engine": EngineWorkers, "engine_eos": EngineExactlyOnce,
                                    "passthrough": Passthrough, "quix_naive": QuixNaive,
                                    "quix_journey": QuixJourney, "naive_faust": NaiveFaust}
