"""Timestamps: RFC 3339 strings or epoch milliseconds in, epoch milliseconds inside."""

from __future__ import annotations

from datetime import datetime, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_ts_ms(value: object) -> int | None:
    """RFC 3339 string or integer epoch ms -> epoch ms; ``None`` if it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "T" not in text and "t" not in text and " " not in text:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:  # RFC 3339 requires an offset; be lenient and read it as UTC
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_last_ms: tuple[int, str] = (-1, "")   # one decision stamps many records with the same "now"
# The text up to the seconds, by minute since the epoch: the times a worker formats (its events',
# its clock, timers due) fall in few minutes. Cleared when it holds MINUTES_KEPT of them.
_minutes: dict[int, str] = {}
MINUTES_KEPT = 4096
_SECONDS = tuple(f"{n:02d}" for n in range(60))
_MILLIS = tuple(f".{n:03d}Z" for n in range(1000))     # the text after the seconds, by millisecond


def format_ts(ms: int) -> str:
    """Epoch ms -> ``2026-11-23T10:00:00.123Z``."""
    global _last_ms
    done = _last_ms                     # one read: safe even if threads share the cache
    if done[0] == ms:
        return done[1]
    seconds = ms // 1000
    minute = seconds // 60
    prefix = _minutes.get(minute)
    if prefix is None:
        if len(_minutes) >= MINUTES_KEPT:
            _minutes.clear()
        prefix = _minutes[minute] = datetime.fromtimestamp(minute * 60, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:")
    text = prefix + _SECONDS[seconds - minute * 60] + _MILLIS[ms - seconds * 1000]
    _last_ms = (ms, text)
    return text
