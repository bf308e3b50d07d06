"""``orchestrator tail TOPIC [--customer C] [--from T] [--follow]``: the records of an output topic,
one JSON line each: ``{"topic", "partition", "offset", "key", "value"}``, the value decoded from JSON
(a value that is not JSON is ``null``, with its text as ``"raw"``).

- TOPIC is ``dlq``, ``decisions``, ``suppressions`` or ``actions.<channel>``, after
  ``ORCH_TOPIC_PREFIX`` as every command names topics, or the full name (``orch.dlq``).
- Only committed records are read (``isolation_level="read_committed"``), as an adapter sees them
  when the worker writes in transactions.
- ``--customer C``: only the records keyed by C (on ``dlq``, the dead-lettered message's own key),
  read from the one partition the worker places that key in (``ORCH_PRODUCER_PARTITIONER``, as
  ``explain`` reads).
- ``--from T``: only the records whose Kafka timestamp is at or after T (an RFC 3339 time, a date,
  epoch milliseconds, or a duration ago such as ``1h``); anything else is refused as a usage error
  (exit code 2, as ``backtest`` refuses it).
- Without ``--follow`` it stops at the end of each partition as it was when it started; with
  ``--follow`` it then waits for new records until Ctrl-C or SIGTERM (exit 0).

Records come in each partition's order, so one customer's in the order the worker wrote them. It
joins no consumer group (partitions are assigned, nothing is committed) and creates no topic: a
missing one is one sentence.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from orchestrator.admin import stop_on_signals
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.kafkaio.clients import placement, read_to_end, start_client

OUTPUT = re.compile(r"(?:(?P<prefix>.+)\.)?(?P<suffix>dlq|decisions|suppressions|actions\.[^.]+)")
NOT_CREATED = "the worker creates its output topics at start, actions.<channel> for each channel of its policies"


def topic_name(settings: Settings, name: str) -> str:
    """The output topic TOPIC names: a suffix gets ``ORCH_TOPIC_PREFIX``, a full name is kept."""
    m = OUTPUT.fullmatch(name)
    if m is None:
        raise ConfigError(f"{name!r} is not an output topic: give dlq, decisions, suppressions or actions.<channel> "
                          f"(after ORCH_TOPIC_PREFIX={settings.topic_prefix}), or a full name such as "
                          f"{settings.topics.dlq}")
    return name if m.group("prefix") else settings.topics.name(name)


def line(msg: Any) -> bytes:
    """One record as a JSON line."""
    out: dict[str, Any] = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                           "key": None if msg.key is None else msg.key.decode("utf-8", "replace"), "value": None}
    if msg.value is not None:
        try:
            out["value"] = orjson.loads(msg.value)
        except orjson.JSONDecodeError:
            out["raw"] = msg.value.decode("utf-8", "replace")
    return orjson.dumps(out) + b"\n"


async def tail(settings: Settings, name: str, *, customer: str | None = None, since_ms: int | None = None,
               follow: bool = False, out: Any = None, stop: asyncio.Event | None = None) -> int:
    """Write the records of the topic ``name`` to ``out`` (binary, default stdout) as JSON lines
    (see the module docstring); returns how many. ``stop`` ends a ``follow`` (and a long read)."""
    from orchestrator.kafkaio.topics import require_topics
    out = out or sys.stdout.buffer
    stop = stop or asyncio.Event()
    topic = topic_name(settings, name)
    parts = (await require_topics(settings, [topic], hint=NOT_CREATED))[topic]
    key = None if customer is None else customer.encode()
    if key is not None:
        parts = [placement(settings.producer_partitioner)(key, len(parts))]
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False,
                                isolation_level="read_committed", max_partition_fetch_bytes=4 * 1024 * 1024)
    await start_client(consumer, settings)
    count = 0

    def write(msgs: list[Any]) -> None:
        nonlocal count
        chosen = [m for m in msgs if key is None or m.key == key]
        if chosen:
            out.write(b"".join(line(m) for m in chosen))
            out.flush()
            count += len(chosen)

    try:
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)          # the last stable offsets (read_committed)
        starts: dict[TopicPartition, int | None] = dict.fromkeys(tps)
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            starts = {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in tps}
        async for _, msgs in read_to_end(consumer, starts, ends=ends):
            write(msgs)
            if stop.is_set():
                return count
        if not follow:
            return count
        for tp in tps:          # read_to_end may have fetched past the ends it kept to
            consumer.seek(tp, ends[tp])
        while not stop.is_set():
            batch = await consumer.getmany(*tps, timeout_ms=500)
            for msgs in batch.values():
                write(msgs)
        return count
    finally:
        await consumer.stop()


def run(args: argparse.Namespace) -> int:
    from orchestrator.admin.journeys import time_arg, usage_error
    settings = Settings.from_env()
    try:
        since_ms = time_arg(args.since, int(time.time() * 1000))
    except ConfigError as exc:               # a bad option value, as backtest and stats refuse it
        usage_error(str(exc))

    async def main() -> None:
        stop = asyncio.Event()
        with stop_on_signals(lambda _: stop.set()):
            await tail(settings, args.topic, customer=args.customer, since_ms=since_ms, follow=args.follow,
                       stop=stop)

    asyncio.run(main())
    return 0
