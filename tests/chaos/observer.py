"""Reading a scenario's output topics (actions, suppressions, decisions, dead letters) from the
start, for as long as the scenario runs, into what :mod:`tests.chaos.verify` compares.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from typing import Any

import orjson

from tests.chaos.expected import action_fingerprint, decision_tuple, suppression_fingerprint
from tests.chaos.workers import PARTITIONS

log = logging.getLogger("chaos")


class Observer:
    """Reads every output topic of a scenario from the start, for as long as the scenario runs."""

    def __init__(self, bootstrap: str, prefix: str, channels: tuple[str, ...]) -> None:
        self.bootstrap = bootstrap
        self.action_topics = [f"{prefix}.actions.{c}" for c in channels]
        self.topics = self.action_topics + [f"{prefix}.suppressions", f"{prefix}.decisions", f"{prefix}.dlq"]
        self.prefix = prefix
        self.action_records = 0
        self.action_counts: Counter = Counter()
        self.decided_at: dict[str, set[str]] = defaultdict(set)
        self.actions: dict[str, set[tuple]] = defaultdict(set)
        self.first_seen: dict[str, float] = {}
        self.supp_records = 0
        self.suppressions: dict[str, set[tuple]] = defaultdict(set)
        self.decision_records = 0
        self.decisions: set[tuple] = set()
        self.decision_counts: Counter = Counter()
        self.supp_counts: Counter = Counter()
        self.dlq_records = 0
        self.dlq: dict[tuple[int, int], set[str]] = defaultdict(set)   # (events partition, offset) -> reasons
        self.dlq_foreign: list[dict[str, Any]] = []
        self.unparsable = 0
        self._consumer: Any = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, isolation_level="read_committed",
                                          auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
        await self._consumer.start()
        tps = [TopicPartition(t, p) for t in self.topics for p in range(PARTITIONS)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a broker going away; the consumer reconnects
                log.debug("observer: %s", e)
                await asyncio.sleep(0.2)
                continue
            now = time.monotonic()
            for tp, msgs in batch.items():
                for m in msgs:
                    self._take(tp.topic, m.value, now)

    def _take(self, topic: str, raw: bytes, now: float) -> None:
        try:
            v = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.unparsable += 1
            return
        if topic in self.action_topics:
            self.action_records += 1
            aid = v.get("action_id")
            self.action_counts[aid] += 1
            self.decided_at[aid].add(v.get("decided_at"))
            self.actions[aid].add(action_fingerprint(v))
            self.first_seen.setdefault(aid, now)
        elif topic.endswith(".suppressions"):
            self.supp_records += 1
            self.supp_counts[v.get("suppression_id")] += 1
            self.suppressions[v.get("suppression_id")].add(suppression_fingerprint(v))
        elif topic.endswith(".decisions"):
            self.decision_records += 1
            self.decisions.add(decision_tuple(v))
            self.decision_counts[decision_tuple(v)] += 1
        else:
            self.dlq_records += 1
            if v.get("topic") == f"{self.prefix}.events":
                self.dlq[(v.get("partition"), v.get("offset"))].add(v.get("reason"))
            else:
                self.dlq_foreign.append(v)

    async def caught_up(self) -> bool:
        tps = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(tps)
        for tp in tps:
            if await self._consumer.position(tp) < ends[tp]:
                return False
        return True

    async def drain(self, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if await self.caught_up():
                    return True
            except Exception as e:  # noqa: BLE001
                log.debug("observer drain: %s", e)
            await asyncio.sleep(0.2)
        return False

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
