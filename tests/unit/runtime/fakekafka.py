"""A producer that keeps what it is given, for unit tests of the worker's batch path (no broker).

It has the three calls the batch path makes: ``create_batch()``, the batch's ``append``/``close``/
``record_count``, and ``send_batch()``, whose future is acknowledged at once with offsets counted per
topic partition. Integration tests use the real broker; this is for what needs no Kafka at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord, RecordMetadata


class FakeBatch:
    def __init__(self, max_records: int = 10_000) -> None:
        self.records: list[tuple[bytes | None, bytes | None]] = []
        self.max_records = max_records
        self.closed = False

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes | None) -> object | None:
        if self.closed or len(self.records) >= self.max_records:
            return None
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        self.closed = True

    def record_count(self) -> int:
        return len(self.records)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, bytes | None, bytes | None]] = []     # topic, partition, key, value
        self._ends: dict[tuple[str, int], int] = {}

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future:
        first = self._ends.get((topic, partition), 0)
        for key, value in batch.records:
            self.sent.append((topic, partition, key, value))
        self._ends[(topic, partition)] = first + len(batch.records)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        fut.set_result(RecordMetadata(topic, partition, TopicPartition(topic, partition), first, -1, 0, 0))
        return fut

    def on(self, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
        """(partition, key, value) of what was sent to ``topic``."""
        return [(p, k, v) for t, p, k, v in self.sent if t == topic]


def record(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> ConsumerRecord:
    """A consumer record as aiokafka's ``getmany`` returns it."""
    return ConsumerRecord(topic, partition, offset, 0, 0, key, value, None, len(key or b""), len(value or b""), [])


def records(*items: ConsumerRecord) -> dict[TopicPartition, list[Any]]:
    """``getmany``'s shape: records by topic partition, in the order given."""
    out: dict[TopicPartition, list[Any]] = {}
    for r in items:
        out.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
    return out
