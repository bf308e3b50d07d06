"""A real worker process against the real local broker, and helpers to read its topics."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from orchestrator.testing.childproc import ChildProcess
from orchestrator.config import default_bootstrap  # noqa: F401 - re-exported
from orchestrator.testing.net import broker_reachable, free_port  # noqa: F401 - re-exported
from orchestrator.testing.worker import WORKER_ARGV, worker_env
from orchestrator.observability.scrape import scrape_port, total  # noqa: F401 - re-exported

HERE = Path(__file__).parent
BOOTSTRAP = default_bootstrap()
READY_TIMEOUT_S = 120.0
OUTPUT_TIMEOUT_S = 60.0






scrape = scrape_port


class WorkerProcess(ChildProcess):
    """``orchestrator worker`` in a subprocess with its own topic prefix, data dir and port."""

    def __init__(self, tmp: Path, *, prefix: str | None = None, partitions: int = 4,
                 journeys: Path = HERE / "journeys", policies: Path = HERE / "policies.yaml",
                 extra_env: dict[str, str] | None = None) -> None:
        self.prefix = prefix or f"it-{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.data_dir = tmp / f"data-{self.prefix}"
        env = worker_env(prefix=self.prefix, partitions=partitions, data_dir=self.data_dir, web_port=self.port,
                         journeys=journeys, policies=policies, bootstrap=BOOTSTRAP, extra=extra_env)
        super().__init__(list(WORKER_ARGV), env, tmp / f"worker-{self.prefix}.log")

    def topic(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    def start(self) -> "WorkerProcess":
        super().start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.exit_code() is not None:
                raise AssertionError(f"worker exited with {self.exit_code()}:\n{self.log_tail()}")
            if scrape(self.port) is not None:
                return self
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {READY_TIMEOUT_S}s:\n{self.log_tail()}")

    def metrics(self) -> dict[str, float]:
        return scrape(self.port) or {}

    def consumed(self) -> float:
        return total(self.metrics(), "orch_events_in_total")

    def wait_consumed(self, n: float, timeout_s: float = OUTPUT_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.consumed() >= n:
                return
            if self.exit_code() is not None:
                raise AssertionError(f"worker died:\n{self.log_tail()}")
            time.sleep(0.1)
        raise AssertionError(f"worker consumed {self.consumed()} < {n} events in {timeout_s}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        code = super().stop(sig, timeout_s)
        return 0 if code is None else code


def event(customer: str, etype: str, *, eid: str | None = None, props: dict[str, Any] | None = None,
          ts: int | str | None = None) -> dict[str, Any]:
    return {"event_id": eid or f"e-{uuid.uuid4().hex[:12]}", "customer_id": customer, "type": etype,
            "ts": ts if ts is not None else int(time.time() * 1000), "properties": props or {}}


async def produce(topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    """Send (key, value) pairs in order, waiting for every acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, max_request_size=2 * 1024 * 1024,
                                enable_idempotence=True)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


def cli_env(prefix: str, **extra: str) -> dict[str, str]:
    """The environment of an ``orchestrator`` command run on topic prefix ``prefix`` (4 partitions)."""
    return {**os.environ, "ORCH_BOOTSTRAP": BOOTSTRAP, "ORCH_TOPIC_PREFIX": prefix, "ORCH_PARTITIONS": "4",
            "ORCH_POLICIES": str(HERE / "policies.yaml"), **extra}


async def create_topic(name: str, configs: dict[str, str] | None = None, partitions: int = 4) -> None:
    """A topic whose partitions all answer (a new partition's leader serves a moment after it is created)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, request_timeout_ms=60_000)
    await consumer.start()
    try:
        await consumer.end_offsets([TopicPartition(name, p) for p in range(partitions)])
    finally:
        await consumer.stop()


def dumps(e: dict[str, Any]) -> bytes:
    return orjson.dumps(e)


async def read_all(topics: list[str], *, until: Callable[[list[dict[str, Any]]], bool] | None = None,
                   timeout_s: float = OUTPUT_TIMEOUT_S) -> list[dict[str, Any]]:
    """Read every record of ``topics`` from the start; keep reading until ``until(records)`` holds.

    Records are dicts: topic, partition, offset, key (str|None), value (parsed JSON).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    records: list[dict[str, Any]] = []
    try:
        # Without a group id, a subscription is assigned every partition, starting at the beginning.
        consumer.subscribe(topics)
        deadline = time.monotonic() + timeout_s
        while len({tp.topic for tp in consumer.assignment()}) < len(set(topics)):
            _collect(records, await consumer.getmany(timeout_ms=100))
            if time.monotonic() > deadline:
                raise AssertionError(f"topics {topics} not assigned within {timeout_s}s")
        tps = sorted(consumer.assignment())
        deadline = time.monotonic() + timeout_s
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            _collect(records, batch)
            if not batch:
                ends = await consumer.end_offsets(tps)
                caught_up = True
                for tp in tps:
                    caught_up = caught_up and await consumer.position(tp) >= ends[tp]
                if caught_up and (until is None or until(records)):
                    return records
            if time.monotonic() > deadline:
                if until is None:
                    return records
                raise AssertionError(f"condition not met within {timeout_s}s; read {len(records)} records: "
                                     f"{[r['value'] for r in records][-10:]}")
    finally:
        await consumer.stop()


async def read_committed(topics: list[str], want: int, timeout_s: float,
                         item: Callable[[str, Any], Any]) -> list[Any]:
    """``item(topic, record)`` of every record a ``read_committed`` reader sees of ``topics`` from the
    start, until ``want`` of them or time is up, and a moment more: a copy would come after the last
    expected record (what exactly-once tests count)."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(got) < want:
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                got.extend(item(tp.topic, m) for m in msgs)
        for _ in range(4):
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                got.extend(item(tp.topic, m) for m in msgs)
    finally:
        await consumer.stop()
    return got


def _collect(records: list[dict[str, Any]], batch: dict[TopicPartition, list[Any]]) -> None:
    for msgs in batch.values():
        for m in msgs:
            records.append({"topic": m.topic, "partition": m.partition, "offset": m.offset,
                            "key": m.key.decode() if m.key is not None else None,
                            "value": orjson.loads(m.value)})
