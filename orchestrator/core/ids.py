"""Deterministic ids and buckets: the same inputs give the same value on every worker, every run.

``action_id`` and ``suppression_id`` are built with :func:`stable_hash`, so a replayed input
produces the same ids and adapters can de-duplicate on them; splits and holdouts use
:func:`bucket`, so a customer is always in the same arm (docs/journeys.md#split).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache


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
