"""`orchestrator produce` as a real process on the real broker: it streams what it reads, a signal
stops it without losing what was read, and a line it cannot send is reported and the others sent."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from orchestrator.kafkaio.clients import partition_for
from tests.integration.harness import BOOTSTRAP, cli_env, create_topic, read_all

SUMMARY = re.compile(r"sent (\d+) events? to (\S+)")


def start_produce(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "produce", *args], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def reap(proc: subprocess.Popen) -> None:
    """A produce process a test left running (it failed before the process ended) is killed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def line(customer: str, n: int, pad: str = "") -> bytes:
    return orjson.dumps({"event_id": f"e-{n}", "customer_id": customer, "type": "stream.test",
                         "ts": 1_790_000_000_000 + n, "properties": {"n": n, "pad": pad}})


def numbers(records: list[dict]) -> list[int]:
    """The ``n`` of each record, in offset order (all of one customer: one partition)."""
    return [r["value"]["properties"]["n"] for r in sorted(records, key=lambda r: r["offset"])]


async def test_a_line_is_on_the_topic_before_the_input_ends():
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    topic, customer = f"{prefix}.events", f"c-{uuid.uuid4().hex[:8]}"
    await create_topic(topic)
    proc = start_produce(cli_env(prefix))
    try:
        proc.stdin.write(line(customer, 1) + b"\n")
        proc.stdin.flush()
        # stdin stays open: the first line must be readable before the input ends (as with `tail -f`)
        first = await read_all([topic], until=lambda rs: len(rs) >= 1)
        assert numbers(first) == [1] and proc.poll() is None
        proc.stdin.write(line(customer, 2) + b"\n")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        reap(proc)
    err = proc.stderr.read().decode()
    assert SUMMARY.search(err).groups() == ("2", topic), err
    records = await read_all([topic], until=lambda rs: len(rs) >= 2)
    assert numbers(records) == [1, 2]
    # Placed as the worker expects (ORCH_PRODUCER_PARTITIONER, murmur2 by default), as before.
    assert {r["partition"] for r in records} == {partition_for(customer.encode(), 4)}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_mid_stream_sends_every_line_read_and_says_how_many(sig):
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    topic, customer = f"{prefix}.events", f"c-{uuid.uuid4().hex[:8]}"
    await create_topic(topic)
    proc = start_produce(cli_env(prefix))
    try:
        proc.stdin.write(b"".join(line(customer, n) + b"\n" for n in range(1, 6)))
        proc.stdin.flush()
        await read_all([topic], until=lambda rs: len(rs) >= 5)      # it is streaming
        proc.stdin.write(b"".join(line(customer, n) + b"\n" for n in range(6, 201)))
        proc.stdin.flush()
        proc.send_signal(sig)                 # stdin still open: the producer would wait for more
        code = proc.wait(timeout=60)
    finally:
        reap(proc)
    err = proc.stderr.read().decode()
    assert code == 0, err                     # a requested stop is no error
    assert f"stopped by {sig.name}" in err and "Traceback" not in err, err
    sent, where = SUMMARY.search(err).groups()
    assert where == topic and int(sent) >= 5, err
    # Exactly the lines it counted, in order, each once: nothing it read was dropped.
    records = await read_all([topic], until=lambda rs: len(rs) >= int(sent))
    assert numbers(records) == list(range(1, int(sent) + 1))


async def test_a_signal_does_not_send_the_piece_of_a_line_read_before_it():
    # A stop lands anywhere in the input: what was read after the last newline is a line cut in two (or
    # one being typed). It once went out as a last line, "not JSON", and the stop exited 1.
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    topic, customer = f"{prefix}.events", f"c-{uuid.uuid4().hex[:8]}"
    await create_topic(topic)
    proc = start_produce(cli_env(prefix))
    piece = line(customer, 6)[:25]
    try:
        proc.stdin.write(b"".join(line(customer, n) + b"\n" for n in range(1, 6)) + piece)
        proc.stdin.flush()
        await read_all([topic], until=lambda rs: len(rs) >= 5)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        reap(proc)
    err = proc.stderr.read().decode()
    assert code == 0, err
    assert SUMMARY.search(err).groups() == ("5", topic), err
    assert f"the {len(piece)} bytes read after the last newline were not a whole line and were not sent" in err
    assert "line 6" not in err, err
    assert numbers(await read_all([topic], until=lambda rs: len(rs) >= 5)) == [1, 2, 3, 4, 5]


async def test_lines_it_cannot_send_are_reported_by_number_and_the_others_sent():
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    topic, customer = f"{prefix}.events", f"c-{uuid.uuid4().hex[:8]}"
    limit = 4096
    await create_topic(topic, {"max.message.bytes": str(limit)})

    def sized(n: int, batch: int) -> bytes:
        """A line whose record batch, alone, is ``batch`` bytes: a 61-byte batch header, then the
        record (length varint, attributes, offset and timestamp deltas, key, value, header count)."""
        base = line(customer, n)
        value_len = len(base)
        while True:
            body = 3 + 1 + len(customer) + varint_size(value_len) + value_len + 1
            if 61 + varint_size(body) + body >= batch:
                break
            value_len += 1
        return line(customer, n, pad="x" * (value_len - len(base)))

    at_limit, over = sized(3, limit), sized(4, limit + 1)
    # The broker itself refuses the longer one (so the limit produce applies is Kafka's, to the byte).
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, max_request_size=1 << 20)
    await producer.start()
    try:
        with pytest.raises(MessageSizeTooLargeError):
            await producer.send_and_wait(f"{prefix}.events", over, key=customer.encode(), partition=0)
    finally:
        await producer.stop()

    lines = [line(customer, 1), b"not json at all", at_limit, over, b"[1, 2]",
             orjson.dumps({"event_id": "e-x", "type": "stream.test", "ts": 1}), b"", line(customer, 8)]
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "produce"], env=cli_env(prefix),
                          input=b"\n".join(lines) + b"\n", capture_output=True, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    reported = dict(re.findall(r"^line (\d+): (.*)$", err, re.M))
    assert sorted(map(int, reported)) == [2, 4, 5, 6], err
    assert "not JSON" in reported["2"]
    assert f"over the message size limit of {topic} ({limit} bytes" in reported["4"]
    assert "not a JSON object" in reported["5"] and "customer_id" in reported["6"]
    assert "sent 3 events to" in err and "refused 4 lines" in err, err
    assert numbers(await read_all([topic], until=lambda rs: len(rs) >= 3)) == [1, 3, 8]


def varint_size(n: int) -> int:
    """Bytes of Kafka's zig-zag varint of ``n``."""
    z, size = (n << 1) ^ (n >> 63), 1
    while z >= 0x80:
        z >>= 7
        size += 1
    return size
