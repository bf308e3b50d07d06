"""Small aiokafka helpers for the CLI: produce JSON lines, read topics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

import orjson
from aiokafka import AIOKafkaProducer

from orchestrator.config import Settings


def key_of(line: bytes) -> bytes | None:
    """The customer_id of a JSON event line, as the message key (None if unreadable)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    cid = data.get("customer_id") if isinstance(data, dict) else None
    return cid.encode() if isinstance(cid, str) else None


async def produce_lines(settings: Settings, lines: Iterable[bytes] | BinaryIO, *, topic: str) -> int:
    """Send each non-empty line as one message keyed by its customer_id. Returns the count."""
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(), linger_ms=5, acks="all",
                                max_request_size=2 * 1024 * 1024, enable_idempotence=True)
    await producer.start()
    sent = 0
    try:
        futures = []
        for line in lines:
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            futures.append(await producer.send(topic, value=line, key=key_of(line)))
            sent += 1
        for f in futures:
            await f
    finally:
        await producer.stop()
    return sent


async def partitions_of(settings: Settings, topics: list[str]) -> dict[str, list[int]]:
    """Partition numbers of each existing topic among ``topics`` (missing topics are left out)."""
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs())
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {d["topic"]: sorted(p["partition"] for p in d["partitions"])
            for d in described if d["error_code"] == 0 and d["partitions"]}


async def seek_to_start(consumer, tps) -> None:  # noqa: ANN001 - AIOKafkaConsumer, list[TopicPartition]
    """Position ``tps`` at their first offsets.

    ``seek_to_beginning`` right after ``assign`` races with the default "latest" reset of
    a new assignment (positions came back at the end); an explicit seek does not.
    """
    begins = await consumer.beginning_offsets(tps)
    for tp in tps:
        consumer.seek(tp, begins[tp])
