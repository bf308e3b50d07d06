"""The ceiling: a plain aiokafka consume -> produce passthrough, no logic.

    BENCH_IN=t.events BENCH_OUT=t.out BENCH_GROUP=g python -m benchmarks.passthrough

What a good hand-written at-least-once client does: fetch big batches (``getmany``), copy each
record (key and value untouched) into a producer batch for the same partition number of the output
topic (``create_batch``/``send_batch``: no per-message future, no partitioner call), keep one batch
in flight while fetching the next, and commit the input offsets of batches whose outputs the broker
acknowledged, once a second (Faust's ``broker_commit_interval``). acks=all, linger 5 ms like the
worker. Runs on uvloop until SIGTERM/SIGINT, then commits what is acknowledged and exits 0.

Environment: ``BENCH_BOOTSTRAP`` (``localhost:9092``), ``BENCH_IN``, ``BENCH_OUT``, ``BENCH_GROUP``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

COMMIT_INTERVAL_S = 1.0
MAX_RECORDS = 10_000


async def run() -> None:
    bootstrap = os.environ.get("BENCH_BOOTSTRAP", "localhost:9092")
    src, dst, group = os.environ["BENCH_IN"], os.environ["BENCH_OUT"], os.environ["BENCH_GROUP"]
    consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
                                fetch_max_bytes=32 * 1024 * 1024, session_timeout_ms=10_000,
                                heartbeat_interval_ms=2_000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024, max_request_size=2 * 1024 * 1024)
    await producer.start()
    await consumer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    pending: tuple[list[asyncio.Future[Any]], dict[Any, int]] | None = None
    committable: dict[Any, int] = {}
    last_commit = time.monotonic()

    async def settle(p: tuple[list[asyncio.Future[Any]], dict[Any, int]] | None) -> None:
        if p is None:
            return
        futures, offsets = p
        if futures:
            await asyncio.gather(*futures)
        committable.update(offsets)

    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=MAX_RECORDS)
            current: tuple[list[asyncio.Future[Any]], dict[Any, int]] | None = None
            if batch:
                futures: list[asyncio.Future[Any]] = []
                offsets: dict[Any, int] = {}
                for tp, msgs in batch.items():
                    builder = producer.create_batch()
                    for m in msgs:
                        if builder.append(key=m.key, value=m.value, timestamp=None) is None:
                            futures.append(await producer.send_batch(builder, dst, partition=tp.partition))
                            builder = producer.create_batch()
                            builder.append(key=m.key, value=m.value, timestamp=None)
                    if builder.record_count():
                        futures.append(await producer.send_batch(builder, dst, partition=tp.partition))
                    offsets[tp] = msgs[-1].offset + 1
                current = (futures, offsets)
            await settle(pending)          # the previous batch is acknowledged while this one is on its way
            pending = current
            if committable and time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
                await consumer.commit(dict(committable))
                committable.clear()
                last_commit = time.monotonic()
        await settle(pending)
        if committable:
            await consumer.commit(dict(committable))
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> int:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
