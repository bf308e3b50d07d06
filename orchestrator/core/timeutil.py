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


_last: tuple[int, str] = (-1, "")   # one decision stamps many records with the same "now"
_last_ms: tuple[int, str] = (-1, "")
_MILLIS = tuple(f".{n:03d}Z" for n in range(1000))     # the text after the seconds, by millisecond


def format_ts(ms: int) -> str:
    """Epoch ms -> ``2026-11-23T10:00:00.123Z``."""
    global _last, _last_ms
    done = _last_ms                     # one read: safe even if threads share the cache
    if done[0] == ms:
        return done[1]
    seconds = ms // 1000
    last = _last
    if last[0] != seconds:
        last = (seconds, datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
        _last = last
    text = last[1] + _MILLIS[ms - seconds * 1000]
    _last_ms = (ms, text)
    return text
