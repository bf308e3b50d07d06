"""Token buckets: how the adapter meets a provider's requests-per-second limit.

Pure and synchronous (the clock is an argument), so the arithmetic is unit-tested without
sleeping; :func:`take` is the asyncio wrapper the adapter awaits before each request.
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """At most ``rate`` requests per second on average and at most ``burst`` at once.

    A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; every request
    takes one. Reservations queue in order: the balance may go below zero, and each caller waits
    until its own token has accrued, so concurrent callers are served first come, first served and
    the rate holds however many of them there are. With the default ``burst`` of 1, requests are
    spaced ``1 / rate`` seconds apart: in any span of ``t`` seconds at most ``rate * t + 1`` go
    out, which is what a strict "N per second" provider limit asks for.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int = 1, *, now: float) -> None:
        if rate <= 0:
            raise ValueError(f"a rate must be above 0 per second, got {rate}")
        if burst < 1:
            raise ValueError(f"a burst must be at least 1, got {burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def reserve(self, now: float) -> float:
        """Take one token: the seconds to wait before using it (0 when one is there now)."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        self.tokens -= 1.0
        due = self.stamp if self.tokens >= 0 else self.stamp - self.tokens / self.rate
        return max(0.0, due - now)


async def take(bucket: TokenBucket | None, stopping: asyncio.Event) -> float | None:
    """Wait for a token of ``bucket`` (none: no limit). Returns the seconds waited, or ``None``
    when ``stopping`` was set meanwhile (the caller then gives the request up)."""
    if bucket is None:
        return 0.0
    delay = bucket.reserve(time.monotonic())
    if delay <= 0:
        return 0.0
    try:
        await asyncio.wait_for(stopping.wait(), delay)
    except asyncio.TimeoutError:
        return delay
    return None


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
            if not 0 < rate < float("inf"):
                raise ValueError(f"--max-per-second must be above 0, got {part!r}")
            if not sep:
                default = rate
            elif name in channels:
                specific[name] = rate
            else:
                raise ValueError(f"--max-per-second {part!r} names channel {name!r}, which this adapter does "
                                 f"not consume (its channels: {', '.join(channels)})")
    rates = {c: default for c in channels} if default is not None else {}
    rates.update(specific)               # CHANNEL=RATE wins over a plain number, in any order
    return rates
