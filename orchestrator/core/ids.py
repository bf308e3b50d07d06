"""Deterministic ids and buckets: the same inputs give the same value on every worker, every run.

``action_id`` and ``suppression_id`` are built with :func:`stable_hash`, so a replayed input
produces the same ids and adapters can de-duplicate on them; splits and holdouts use
:func:`bucket`, so a customer is always in the same arm (docs/journeys.md#split).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:                  # mypyc's native 64-bit integer; a plain int when interpreted
    from mypy_extensions import i64


def stable_hash(*parts: object) -> str:
    h = hashlib.blake2b(digest_size=10)
    h.update("\x1f".join(str(p) for p in parts).encode())
    return h.hexdigest()


@lru_cache(maxsize=1 << 16)
def bucket(*parts: object) -> float:
    """A deterministic number in [0, 1) for (journey, customer, ...); the recent ones are remembered
    (a customer's holdout is asked at entry and again at each send)."""
    h = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as Kafka's Java client computes it (``Utils.murmur2``, its default
    partitioner's hash), as an unsigned 32-bit number: aiokafka's ``murmur2``, in machine integers
    once compiled (each product is of a value under 2^32 and ``m`` under 2^31, so it fits a signed
    64-bit integer and none becomes a Python int)."""
    n: i64 = len(data)
    m: i64 = 0x5BD1E995
    mask: i64 = 0xFFFFFFFF
    h: i64 = (0x9747B28C ^ n) & mask
    end: i64 = n - n % 4
    i: i64 = 0
    k: i64 = 0
    while i < end:
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
        i += 4
    rest: i64 = n - end
    if rest >= 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)
