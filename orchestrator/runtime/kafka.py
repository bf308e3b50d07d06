"""Kafka conventions every part of the runtime shares: where a key's records go.

The one partitioner: Kafka's default for keyed records (murmur2 of the key, as the Java client
and aiokafka compute it). The worker places a customer's state, its internal-topic records and its
outputs with it, and ``explain`` finds the customer's changelog and decisions partitions with it.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (Kafka's default for keyed records)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
