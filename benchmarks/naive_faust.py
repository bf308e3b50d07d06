"""The naive Faust baseline: one agent, one RocksDB table get + set per event, one output per event.

    BENCH_IN=t.events BENCH_OUT=t.out BENCH_APP_ID=t-naive BENCH_DATA_DIR=/tmp/d python -m benchmarks.naive_faust

A historical row: the worker was a Faust agent once; Quix Streams is the peer to beat now. Needs
faust-streaming, which only the ``bench`` extra installs.

What a first Faust app looks like: ``async for event in stream.events()``, read the event's JSON,
``table.get(customer)`` / ``table[customer] = ...`` (a per-customer event count with the last event
type, raw bytes values, so no ``faust.Record`` cost), ``await out.send(...)`` one small JSON record
(customer, count, the event's ``ts``). The settings the worker had when it was a Faust app:
at-least-once, commit every second, small rocksdict caches, linger 5 ms, acks=all, uvloop, Faust's
web server off.

Environment: ``BENCH_BOOTSTRAP`` (``localhost:9092``), ``BENCH_IN``, ``BENCH_OUT``, ``BENCH_APP_ID``,
``BENCH_PARTITIONS`` (8), ``BENCH_DATA_DIR``.
"""

from __future__ import annotations

import asyncio
import os
import sys

import faust
import orjson

ROCKSDB_OPTIONS = {
    "driver": "rocksdict",
    "write_buffer_size": 16 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 32 * 1024 * 1024,
    "block_cache_compressed_size": 0,
}


def make_app() -> faust.App:
    bootstrap = os.environ.get("BENCH_BOOTSTRAP", "localhost:9092")
    partitions = int(os.environ.get("BENCH_PARTITIONS", "8"))
    app = faust.App(
        os.environ["BENCH_APP_ID"],
        broker=[f"kafka://{b}" for b in bootstrap.split(",")],
        store="rocksdb://",
        datadir=os.environ["BENCH_DATA_DIR"],
        topic_partitions=partitions,
        topic_replication_factor=1,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        broker_commit_interval=1.0,
        producer_linger_ms=5,
        producer_max_batch_size=256 * 1024,
        producer_acks=-1,
        producer_max_request_size=2 * 1024 * 1024,
        consumer_max_fetch_size=4 * 1024 * 1024,
        stream_buffer_maxsize=4096,
        logging_config=None,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    events = app.topic(os.environ["BENCH_IN"], **raw)
    out = app.topic(os.environ["BENCH_OUT"], **raw)
    table = app.Table("counts", default=None, partitions=partitions, key_type=bytes, value_type=bytes,
                      options=dict(ROCKSDB_OPTIONS))

    async def count(stream: faust.StreamT) -> None:
        async for event in stream.events():
            key: bytes = event.key
            data = orjson.loads(event.value)
            previous = table.get(key)
            n = orjson.loads(previous)["n"] + 1 if previous is not None else 1
            table[key] = orjson.dumps({"n": n, "last": data.get("type")})
            await out.send(key=key, value=orjson.dumps({"customer_id": data.get("customer_id"), "n": n,
                                                        "event_ts": data.get("ts")}))

    app.agent(events, name="count")(count)
    return app


def main() -> int:
    import uvloop
    from faust.worker import Worker

    uvloop.install()
    app = make_app()
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = Worker(app, loglevel="warning", quiet=True, override_logging=False)
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
