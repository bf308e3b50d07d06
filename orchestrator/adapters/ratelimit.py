"""Token buckets: how the adapter meets a provider's requests-per-second limit.

The arithmetic is pure and synchronous (the clock is an argument), so it is unit-tested without
sleeping; :func:`take` is the asyncio wrapper the adapter awaits before each request (its clock
can be injected too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """At most ``rate`` requests per second on average and at most ``burst`` at once.

    A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request
    takes one token at the moment it goes out, never earlier, and the bucket never holds more
    than ``burst``. So in any span of ``t`` seconds at most ``rate * t + burst`` requests go out,
    whatever happened before: after an event-loop stall the requests that were waiting do not go
    out at once, they go at the rate. With the default ``burst`` of 1, requests are spaced
    ``1 / rate`` seconds apart, which is what a strict "N per second" provider limit asks for.
    ``queue`` serves concurrent callers of :func:`take` first come, first served.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp", "queue")

    def __init__(self, rate: float, burst: int = 1, *, now: float) -> None:
        if rate <= 0:
            raise ValueError(f"a rate must be above 0 per second, got {rate}")
        if burst < 1:
            raise ValueError(f"a burst must be at least 1, got {burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now
        self.queue = asyncio.Lock()

    def try_take(self, now: float) -> float:
        """Take a token if one is there at ``now`` and return 0; otherwise take nothing and return
        the seconds until one will be there."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0 - 1e-9:      # 1e-9: float dust of the refill, not a token
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / self.rate


async def take(bucket: TokenBucket | None, stopping: asyncio.Event, *,
               clock: Callable[[], float] = time.monotonic) -> float | None:
    """Wait for a token of ``bucket`` (none: no limit), after the callers that asked before.
    Returns the seconds waited, or ``None`` when ``stopping`` was set meanwhile (the caller then
    gives the request up)."""
    if bucket is None:
        return 0.0
    asked = clock()
    async with bucket.queue:
        if stopping.is_set():
            return None
        while (delay := bucket.try_take(clock())) > 0:
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except asyncio.TimeoutError:
                continue
            return None
    return max(0.0, clock() - asked)


MIN_RATE = 0.001        # requests per second: below it a token would never come in practice
MAX_RATE = 1_000_000.0


def parse_rates(values: list[str], channels: tuple[str, ...]) -> dict[str, float]:
    """``--max-per-second`` values -> requests per second per channel.

    A plain number applies to every channel; ``CHANNEL=RATE`` (repeatable, or comma-separated)
    to one, and wins over a plain number. A channel without a rate is not limited. Raises ``ValueError`` with a readable message.
    """
    default: float | None = None
    specific: dict[str, float] = {}
    for value in values:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            name, sep, number = part.rpartition("=")
            try:
                rate = float(number)
            except ValueError:
                raise ValueError(f"--max-per-second takes a number or CHANNEL=NUMBER, got {part!r}") from None
            if not MIN_RATE <= rate <= MAX_RATE:
                raise ValueError(f"--max-per-second must be between {MIN_RATE:g} (one request every "
                                 f"{1 / MIN_RATE:g} s) and {MAX_RATE:.0f}, got {part!r}")
            if not sep:
                if default is not None and default != rate:
                    raise ValueError(f"--max-per-second gives every channel two rates, {default:g} and {rate:g}")
                default = rate
            elif name in channels:
                if name in specific and specific[name] != rate:
                    raise ValueError(f"--max-per-second gives channel {name} two rates, "
                                     f"{specific[name]:g} and {rate:g}")
                specific[name] = rate
            else:
                raise ValueError(f"--max-per-second {part!r} names channel {name!r}, which this adapter does "
                                 f"not consume (its channels: {', '.join(channels)})")
    rates = {c: default for c in channels} if default is not None else {}
    rates.update(specific)               # CHANNEL=RATE wins over a plain number, in any order
    return rates
