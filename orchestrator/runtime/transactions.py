"""Exactly-once (``ORCH_PROCESSING_GUARANTEE=exactly-once``): each input partition's share of a batch is
one Kafka transaction: its outputs, its changelog records and its input offsets, committed together or
not at all.

aiokafka commits offsets in a transaction with the group id only (no consumer group metadata, KIP-447),
so a zombie, a worker that lost a partition in a rebalance without knowing it, is fenced the older way
(Kafka Streams' first exactly-once): one transactional producer per input partition, its
``transactional.id`` made of the consumer group and the partition number. The worker that is assigned a
partition starts that producer, which makes Kafka abort whatever the previous owner left open and refuse
that owner's later writes (a new producer epoch). So at most one worker can commit a partition's work,
and a reader with ``isolation.level=read_committed`` sees each output once, whatever crashes.

A partition's transactions follow each other: the next batch's records for a partition are handed to
its producer only once the previous batch's transaction has ended (:meth:`Transactions.ready`), while
the batch itself is decided meanwhile. What the journal does in at-least-once (outputs kept to re-send a
replayed input) is not needed: an input whose transaction did not commit is decided again, from the
state before it, and its first outputs were never visible.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaProducer, TopicPartition

log = logging.getLogger("orchestrator.worker")


class Transactions:
    """The transactional producers of this worker's input partitions."""

    def __init__(self, make: Callable[[str], AIOKafkaProducer], group_id: str) -> None:
        self.make, self.group_id = make, group_id
        self.producers: dict[int, AIOKafkaProducer] = {}
        self._ended: dict[int, asyncio.Event] = {}         # partition -> set while no transaction is open

    def transactional_id(self, partition: int) -> str:
        return f"{self.group_id}-{partition}"

    async def open(self, partitions: set[int]) -> None:
        """Start the producers of partitions just assigned (fencing their previous owners)."""
        for p in sorted(partitions):
            if p in self.producers:
                continue
            producer = self.make(self.transactional_id(p))
            await producer.start()
            self.producers[p] = producer
            ended = self._ended[p] = asyncio.Event()
            ended.set()

    async def close(self, partitions: set[int]) -> None:
        """Stop the producers of partitions revoked (after their last transaction ended)."""
        for p in sorted(partitions):
            producer = self.producers.pop(p, None)
            self._ended.pop(p, None)
            if producer is not None:
                await producer.stop()

    async def ready(self, partitions: set[int]) -> None:
        """Until the previous transaction of each of ``partitions`` has ended."""
        for p in partitions:
            ended = self._ended.get(p)
            if ended is not None:
                await ended.wait()

    async def begin(self, partition: int) -> AIOKafkaProducer:
        """Open the partition's next transaction; its producer."""
        producer = self.producers[partition]
        self._ended[partition].clear()
        await producer.begin_transaction()
        return producer

    async def commit(self, partition: int, offsets: dict[TopicPartition, int]) -> None:
        """Add the input offsets to the partition's open transaction and commit it."""
        producer = self.producers[partition]
        try:
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.group_id)
            await producer.commit_transaction()
        finally:
            ended = self._ended.get(partition)
            if ended is not None:
                ended.set()

    async def abort_all(self) -> None:
        """Abort every open transaction (the worker stops on an error; their inputs are decided again)."""
        for p, producer in list(self.producers.items()):
            if not self._ended[p].is_set():
                try:
                    await producer.abort_transaction()
                except Exception as exc:  # noqa: BLE001 - stopping anyway; the next owner fences it
                    log.warning("could not abort the transaction of partition %d: %s", p, type(exc).__name__)
                self._ended[p].set()

    async def stop(self) -> None:
        await self.close(set(self.producers))
