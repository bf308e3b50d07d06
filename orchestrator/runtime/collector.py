"""Every record a batch produces, placed and appended without awaiting (Kafka Streams' RecordCollector).

Records are appended to one producer batch per topic partition as the batch is decided, and handed to
the producer all at once at its end (:meth:`Collector.submit`), so deciding never waits for Kafka.
Each record belongs to the work of one input partition (:attr:`Collector.via`); in exactly-once each
input partition has a producer of its own (:mod:`~orchestrator.runtime.transactions`), so its records
go through that one, in its transaction; in at-least-once they all share one producer.
Placement is the one partitioner of the product (:func:`~orchestrator.kafkaio.clients.placement`,
``ORCH_PRODUCER_PARTITIONER``), computed once per key and remembered: a customer's outputs, internal
records and changelog records go where its events go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

# Keys whose partition is remembered, per partition count; then all are forgotten and the busiest come
# back first. A key takes about 93 bytes: 500,000 would hold 46 MB, and the benchmark's 30-minute soak
# meets nearly all of its 200,000 customers (about 18 MiB), the cache growing with each new one. A miss
# costs one murmur2 (about 0.04 µs for a customer id with the compiled murmur2, in machine integers;
# 0.7 µs before them), hardly more than a hit's lookup; the busiest customers are back in it at once.
PLACED_MAX = 65_536


class Sent(NamedTuple):
    """One producer batch handed over: where it went, its delivery future and how many records it holds."""

    via: int
    topic: str
    partition: int
    future: asyncio.Future
    records: int                  # (not `count`: a tuple has a method of that name)


class Collector:
    """The records of the batch being decided, and where each goes."""

    def __init__(self, producer_of: Callable[[int], AIOKafkaProducer], partition_counts: dict[str, int],
                 partitioner: Callable[[bytes, int], int], fail: Callable[[BaseException], NoReturn]) -> None:
        self.producer_of, self.partition_counts, self.partitioner = producer_of, partition_counts, partitioner
        self.fail = fail
        self.via = 0                          # the input partition whose work the records sent now are
        # (producer, topic, partition) -> the input partition they belong to, and their producer batches
        self._builders: dict[tuple[AIOKafkaProducer, str, int], tuple[int, list[Any]]] = {}
        self._round_robin = 0
        self._placed: dict[int, dict[bytes, int]] = {}      # partition count -> key -> partition

    def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
             via: int | None = None) -> None:
        """Add a record to the batch's outbound records (handed to the producer by :meth:`submit`): to
        ``partition``, or where the partitioner places ``key`` (round robin without a key), as work of
        the input partition ``via`` (default :attr:`via`). A record that cannot be sent (larger than a
        producer batch) stops the worker (``fail``) so its input is replayed."""
        if partition is None:
            n = self.partition_counts[topic]
            if key is None:
                self._round_robin += 1
                partition = self._round_robin % n
            else:
                partition = self.place(key, n)
        try:
            self._append(self.via if via is None else via, topic, partition, key, value)
        except Exception as exc:  # noqa: BLE001 - e.g. a record over the size limit
            self.fail(exc)

    def _append(self, via: int, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        producer = self.producer_of(via)
        slot = self._builders.get((producer, topic, partition))
        if slot is None:
            slot = self._builders[(producer, topic, partition)] = (via, [producer.create_batch()])
        builders = slot[1]
        if not append(builders[-1], key, value):
            builder = producer.create_batch()
            if not append(builder, key, value):
                raise ValueError(f"a record of {len(value or b'')} bytes does not fit a producer batch")
            builders.append(builder)

    def place(self, key: bytes, n: int) -> int:
        """The partition of ``key`` among ``n``, remembered (a bounded cache: cleared when it grows large)."""
        placed = self._placed.get(n)
        if placed is None:
            placed = self._placed[n] = {}
        p = placed.get(key)
        if p is None:
            if len(placed) >= PLACED_MAX:
                placed.clear()
            p = placed[key] = self.partitioner(key, n)
        return p

    def vias(self) -> set[int]:
        """The input partitions whose records wait to be submitted."""
        return {via for via, _ in self._builders.values()}

    async def submit(self) -> list[Sent]:
        """Hand every record appended since the last call to its producer, one producer batch per topic
        partition (more if one does not hold them); the next records start new batches."""
        builders, self._builders = self._builders, {}
        sent = []
        for (producer, topic, partition), (via, batches) in builders.items():
            for builder in batches:
                builder.close()
                fut = await producer.send_batch(builder, topic, partition=partition)
                sent.append(Sent(via, topic, partition, fut, builder.record_count()))
        return sent


_NO_HEADERS: list[Any] = []                # never changed


def append(builder: Any, key: bytes | None, value: bytes | None) -> bool:
    """``builder.append(timestamp=None, key=key, value=value) is not None``: whether the record went
    into the producer batch (``False``: it is full, and closed). For aiokafka's own ``BatchBuilder``
    without serializers (the worker's producers have none) this is what its ``append`` does, without
    that method's Python frame, one per record out: the record goes into the batch's C record
    builder at the next relative offset, the current time as its timestamp (aiokafka 0.14, pinned;
    tests/unit/runtime/test_batch_rooms.py checks that the records come out the same). Any other
    batch (a test's) is asked through its ``append``."""
    if type(builder) is BatchBuilder and builder._key_serializer is None and builder._value_serializer is None:
        if builder._closed:
            return False
        if builder._builder.append(builder._relative_offset, None, key=key, value=value, headers=_NO_HEADERS) is None:
            builder.close()
            return False
        builder._relative_offset += 1
        return True
    return builder.append(timestamp=None, key=key, value=value) is not None
