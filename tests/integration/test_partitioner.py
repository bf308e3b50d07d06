"""Producers on librdkafka's default partitioner: with ORCH_PRODUCER_PARTITIONER=crc32 an event keyed
by its customer_id is decided where it arrives; with the default (murmur2) it takes the re-keying hop,
is counted, and the worker says once what to set."""

from __future__ import annotations

import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer

from orchestrator.kafkaio.clients import crc32_partition
from tests.integration.harness import BOOTSTRAP, WorkerProcess, event, read_all, total

N = 40


async def produce_like_librdkafka(topic: str, partitions: int, events: list[dict]) -> None:
    """Keyed by customer_id, each in the partition librdkafka's default partitioner picks."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True)
    await producer.start()
    try:
        for e in events:
            key = e["customer_id"].encode()
            await producer.send_and_wait(topic, value=orjson.dumps(e), key=key,
                                         partition=crc32_partition(key, partitions))
    finally:
        await producer.stop()


def signups() -> list[dict]:
    return [event(f"c-{uuid.uuid4().hex[:8]}", "signup.completed", props={"plan": "pro"}) for _ in range(N)]


def wait_rekeyed(w: WorkerProcess, reason: str, at_least: float, timeout_s: float = 60) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        n = total(w.metrics(), f"orch_events_rekeyed_total{{reason={reason}}}")
        if n >= at_least or time.monotonic() > deadline:
            return n
        time.sleep(0.2)


async def test_crc32_keyed_events_are_decided_where_they_arrive(tmp_path):
    w = WorkerProcess(tmp_path, partitions=4, extra_env={"ORCH_PRODUCER_PARTITIONER": "crc32"}).start()
    try:
        events = signups()
        await produce_like_librdkafka(w.topic("events"), 4, events)
        customers = {e["customer_id"] for e in events}
        actions = await read_all([w.topic("actions.email")],
                                 until=lambda rs: {r["key"] for r in rs} >= customers)
        assert {r["key"] for r in actions} >= customers
        m = w.metrics()
        assert total(m, "orch_events_rekeyed_total{reason=partition}") == 0
        assert total(m, "orch_events_rekeyed_total{reason=key}") == 0
        # Outputs and state are placed by the same function: each action is in its customer's partition.
        assert all(r["partition"] == crc32_partition(r["key"].encode(), 4) for r in actions)
    finally:
        w.stop()
    assert "ORCH_PRODUCER_PARTITIONER" not in w.log_tail(200)


async def test_with_the_wrong_setting_events_take_the_hop_and_the_worker_says_why_once(tmp_path):
    w = WorkerProcess(tmp_path, partitions=4).start()                 # murmur2, the default
    try:
        events = signups()
        await produce_like_librdkafka(w.topic("events"), 4, events)
        customers = {e["customer_id"] for e in events}
        await read_all([w.topic("actions.email")], until=lambda rs: {r["key"] for r in rs} >= customers)
        moved = wait_rekeyed(w, "partition", 1)
        assert 0 < moved < N                    # the keys both partitioners place alike stay put
    finally:
        w.stop()
    log = w.log_tail(400)
    assert log.count("ORCH_PRODUCER_PARTITIONER=crc32") == 1, log
    for e in events:
        assert e["customer_id"] not in log      # no customer id in the warning


async def test_orchestrator_produce_places_keys_as_the_setting_says(tmp_path):
    import subprocess
    import sys

    w = WorkerProcess(tmp_path, partitions=4, extra_env={"ORCH_PRODUCER_PARTITIONER": "crc32"}).start()
    try:
        events = signups()
        path = tmp_path / "events.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        subprocess.run([sys.executable, "-m", "orchestrator", "produce", str(path)], env=w.env, check=True,
                       capture_output=True, timeout=60)
        records = await read_all([w.topic("events")], until=lambda rs: len(rs) >= N)
        assert all(r["partition"] == crc32_partition(r["key"].encode(), 4) for r in records)
        w.wait_consumed(N)
        assert total(w.metrics(), "orch_events_rekeyed_total{reason=partition}") == 0
    finally:
        w.stop()
