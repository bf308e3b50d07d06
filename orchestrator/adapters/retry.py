"""When to retry a request, and how long to wait: exponential backoff with jitter in a budget.

Pure (the clock and the random source are arguments), so every rule is unit-tested.

* **2xx** is a delivery.
* **5xx**, **408** (request timeout), **409** (conflict: Stripe-style providers answer it while a
  request with the same ``Idempotency-Key`` is still being processed, e.g. right after the adapter
  restarted), **425** (too early), **429** (too many requests), a timeout and a connection error
  are retried: the provider did not take the request, or may have and deduplicates the retry on
  its ``Idempotency-Key``.
* Every other status (**other 4xx**, and **3xx**: redirects are not followed, a POST must not turn
  into a GET) is final: the action is dead-lettered.

Retry ``n`` (0 for the first retry) waits between ``c / 2`` and ``c`` seconds, ``c = min(cap,
base * 2**n)`` ("equal jitter": the delay grows, and adapters that failed together do not retry in
step), or longer if the answer carried a ``Retry-After``. No retry starts after the budget: the
delay that would end past ``first attempt + budget`` dead-letters the action instead.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def is_success(status: int) -> bool:
    return 200 <= status < 300


def is_retryable(status: int | None) -> bool:
    """``None`` stands for a timeout or a connection error (no status)."""
    return status is None or status >= 500 or status in RETRYABLE_4XX


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) -> seconds from now; ``None`` if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """``budget_s``: how long after its first attempt an action may still be retried (so how long
    one failing action can hold up its partition); ``base_s`` / ``cap_s``: the backoff's first
    ceiling and its largest."""

    budget_s: float = 300.0
    base_s: float = 0.5
    cap_s: float = 30.0

    def backoff(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before retry number ``retry`` (0, 1, ...): in ``[c/2, c)``, ``c = min(cap, base * 2**retry)``."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(retry, 62))
        return ceiling / 2 + ceiling / 2 * rand()

    def next_delay(self, retry: int, *, started: float, now: float, retry_after: float | None = None,
                   rand: Callable[[], float] = random.random) -> float | None:
        """The wait before retry number ``retry``, or ``None`` if it would start past the budget
        (``started``: when the first attempt began; same clock as ``now``)."""
        delay = self.backoff(retry, rand)
        if retry_after is not None:
            delay = max(delay, retry_after)
        if now + delay >= started + self.budget_s:
            return None
        return delay
