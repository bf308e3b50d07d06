"""`orchestrator tail` as a real process on the real broker: committed records only, filtered by
customer and time, stopping at the end or following until Ctrl-C, and one sentence for a topic that
is not there."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.harness import BOOTSTRAP, cli_env, create_topic

HOUR_MS = 3_600_000


def tail(prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "tail", *args], env=cli_env(prefix),
                          capture_output=True, text=True, timeout=120)


def printed(stdout: str) -> list[dict]:
    return [orjson.loads(line) for line in stdout.splitlines()]


def action(customer: str, n: int) -> bytes:
    return orjson.dumps({"action_id": f"a-{n}", "customer_id": customer, "channel": "email", "n": n})


@pytest.fixture(scope="module")
def topic():
    """``<prefix>.actions.email`` with committed records of two customers, three hours old for the
    first two, and an aborted transaction's record between them and the third."""
    return asyncio.run(fill())


async def fill() -> tuple[str, str]:
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    name = f"{prefix}.actions.email"
    await create_topic(name)
    now = int(time.time() * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"tail-{prefix}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(name, action("c-a", 1), key=b"c-a", timestamp_ms=now - 3 * HOUR_MS)
            await producer.send(name, action("c-b", 2), key=b"c-b", timestamp_ms=now - 3 * HOUR_MS)
        await producer.begin_transaction()
        await producer.send(name, action("c-a", 99), key=b"c-a", timestamp_ms=now)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(name, action("c-a", 3), key=b"c-a", timestamp_ms=now - 60_000)
    finally:
        await producer.stop()
    return prefix, name


async def test_it_prints_every_committed_record_as_a_json_line_and_stops_at_the_end(topic):
    prefix, name = topic
    r = tail(prefix, "actions.email")
    assert r.returncode == 0, r.stderr
    lines = printed(r.stdout)
    assert sorted(line["value"]["n"] for line in lines) == [1, 2, 3]      # not the aborted 99
    assert all(set(line) == {"topic", "partition", "offset", "key", "value"} for line in lines)
    first = next(line for line in lines if line["value"]["n"] == 1)
    assert first["topic"] == name and first["key"] == "c-a" and first["value"]["customer_id"] == "c-a"
    # The full name reads the same (partitions may interleave otherwise: only each one's order is kept).
    assert sorted(r.stdout.splitlines()) == sorted(tail("unused-prefix", name).stdout.splitlines())


async def test_customer_and_from_filter_by_key_and_kafka_timestamp(topic):
    prefix, _ = topic
    by_customer = tail(prefix, "actions.email", "--customer", "c-a")
    assert [line["value"]["n"] for line in printed(by_customer.stdout)] == [1, 3], by_customer.stderr
    recent = tail(prefix, "actions.email", "--from", "1h")
    assert [line["value"]["n"] for line in printed(recent.stdout)] == [3], recent.stderr
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 4 * 3600))
    assert len(printed(tail(prefix, "actions.email", "--from", since).stdout)) == 3
    assert printed(tail(prefix, "actions.email", "--customer", "c-b", "--from", "1h").stdout) == []


async def test_follow_prints_new_records_until_ctrl_c_and_exits_0(topic):
    prefix, name = topic
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "tail", "actions.email", "--customer", "c-b",
                             "--follow"], env=cli_env(prefix), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert orjson.loads(proc.stdout.readline())["value"]["n"] == 2      # what is there already
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        try:
            await producer.send_and_wait(name, action("c-a", 4), key=b"c-a")
            await producer.send_and_wait(name, action("c-b", 5), key=b"c-b")
        finally:
            await producer.stop()
        assert orjson.loads(proc.stdout.readline())["value"]["n"] == 5      # then what comes, c-b's only
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stdout.read() == b"" and proc.stderr.read() == b""


def test_a_missing_or_wrong_topic_is_one_sentence():
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    for args, words, code in ((["dlq"], f"no such topic {prefix}.dlq", 1), (["events"], "not an output topic", 1),
                              (["dlq", "--from", "yesterday"], "not a time", 2)):   # a usage error, as in backtest
        r = tail(prefix, *args)
        assert r.returncode == code and r.stdout == "", r
        assert r.stderr.count("\n") == 1 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
