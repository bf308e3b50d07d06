"""``orchestrator produce [FILE]``: JSON-lines events to a topic, each keyed by its customer_id."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

import orjson
from aiokafka import AIOKafkaProducer

from orchestrator.config import Settings
from orchestrator.runtime.kafka import placement, start_client
from orchestrator.runtime.topics import all_topics, ensure_topics, require_topics


def key_of(line: bytes) -> bytes | None:
    """The customer_id of a JSON event line, as the message key (None if unreadable)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    cid = data.get("customer_id") if isinstance(data, dict) else None
    return cid.encode() if isinstance(cid, str) else None


async def produce_lines(settings: Settings, lines: Iterable[bytes] | BinaryIO, *, topic: str) -> int:
    """Send each non-empty line as one message keyed by its customer_id, in the partition
    ``ORCH_PRODUCER_PARTITIONER`` places that key (as the worker expects). Returns the count."""
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), linger_ms=5, acks="all",
                                max_request_size=2 * 1024 * 1024, enable_idempotence=True)
    await start_client(producer, settings)
    place = placement(settings)
    sent = 0
    try:
        partitions = len(await producer.partitions_for(topic))
        futures = []
        for line in lines:
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            key = key_of(line)
            futures.append(await producer.send(topic, value=line, key=key,
                                               partition=None if key is None else place(key, partitions)))
            sent += 1
        for f in futures:
            await f
    finally:
        await producer.stop()
    return sent


async def produce(settings: Settings, stream: Iterable[bytes] | BinaryIO, topic: str, channels: tuple[str, ...]) -> int:
    """Create the topic first if it is one of the worker's (as the worker would), else it must exist."""
    if topic in all_topics(settings, channels):
        await ensure_topics(settings, channels, only=[topic])
    else:
        await require_topics(settings, [topic], hint="it is not one of the worker's topics, so produce does not "
                             "create it; check --topic")
    return await produce_lines(settings, stream, topic=topic)
