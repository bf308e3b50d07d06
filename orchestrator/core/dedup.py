"""The duplicate rule (docs/events.md#duplicates-late-and-old-events): an ``event_id`` seen for the
same customer within the last ``WINDOW_MS`` is ignored.

The window lives outside the customer's state, so a state holds what journeys need and an event
costs the same whatever its customer sent before. An event is remembered by :func:`key`, a 16-byte
hash of the customer id and the event id (nothing personal in it, and the same key an erased
customer's redelivered event has). The worker keeps the keys in a RocksDB of their own with a
time-to-live and a changelog that Kafka deletes by age (:mod:`orchestrator.runtime.dedup`);
``simulate`` keeps them in memory (:class:`Window`). Either asks the question before the engine is
called: the engine decides only events it has not seen.
"""

from __future__ import annotations

import hashlib
from collections import deque

WINDOW_MS = 25 * 3_600_000          # at least the 24 h the docs promise
KEEP_MS = WINDOW_MS + 3_600_000     # how long the worker keeps a key (RocksDB's time-to-live)
RETAIN_MS = KEEP_MS + 3_600_000     # how long Kafka keeps it on the window's changelog
KEY_LEN = 16
HALF = 8


def key(customer_id: str, event_id: str) -> bytes:
    """The 16 bytes that stand for one event of one customer: a hash of the customer id, then one of
    the event id (8 bytes each; the second is the one states before this module kept)."""
    return key_of(event_hash(customer_id), event_id)


def key_of(customer_hash: bytes, event_id: str) -> bytes:
    """:func:`key` from the customer's half (``event_hash(customer_id)``), for a caller that hashes
    the customer once for several of its events."""
    return customer_hash + event_hash(event_id)


def event_hash(text: str) -> bytes:
    """An 8-byte hash (BLAKE2b): two ids of one customer collide with a chance of about n / 2^64 for n
    ids in the window."""
    return hashlib.blake2b(text.encode(), digest_size=HALF).digest()


class Window:
    """The duplicate window in memory, on the clock of the events it is given (``simulate``)."""

    def __init__(self, window_ms: int = WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._seen: dict[bytes, int] = {}
        self._order: deque[tuple[int, bytes]] = deque()

    def first(self, event_key: bytes, at_ms: int) -> bool:
        """``True`` the first time ``event_key`` comes within the window (and remember it), else ``False``."""
        order, seen = self._order, self._seen
        cutoff = at_ms - self.window_ms
        while order and order[0][0] < cutoff:
            at, k = order.popleft()
            if seen.get(k) == at:
                del seen[k]
        if event_key in seen:
            return False
        seen[event_key] = at_ms
        order.append((at_ms, event_key))
        return True
