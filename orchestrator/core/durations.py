"""Durations (``30s 10m 1h 2d 1w``) and percentages (``10%``) in definitions."""

from __future__ import annotations

import re

_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
# The longest duration anything accepts: a timer set with it stays a time the state's 8-byte fields,
# the timer index and the output timestamps can hold (until the year 9999 from any date before 7900).
MAX_DURATION_DAYS = 36_500
MAX_DURATION_MS = MAX_DURATION_DAYS * 86_400_000
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_duration_ms(text: object) -> int:
    """``"1h"`` -> ``3600000``. Raises ``ValueError`` with a readable message."""
    if isinstance(text, str):
        m = _DURATION.match(text)
        if m:
            ms = int(m.group(1)) * _UNITS_MS[m.group(2)]
            if ms > MAX_DURATION_MS:
                raise ValueError(f"a duration is at most {MAX_DURATION_DAYS}d (100 years), got {text!r}")
            return ms
    raise ValueError(f"expected a duration like 30s, 10m, 1h, 2d or 1w, got {text!r}")


def parse_percent(value: object) -> float:
    """``"10%"`` -> ``0.10``; also accepts a number 0..100 meaning percent."""
    if isinstance(value, bool):
        raise ValueError(f"expected a percentage like 10%, got {value!r}")
    if isinstance(value, (int, float)):
        pct = float(value)
    elif isinstance(value, str) and _PERCENT.match(value):
        pct = float(_PERCENT.match(value).group(1))  # type: ignore[union-attr]
    else:
        raise ValueError(f"expected a percentage like 10%, got {value!r}")
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"a percentage must be between 0% and 100%, got {value!r}")
    return pct / 100.0


def format_duration_ms(ms: int) -> str:
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if ms % size == 0 and ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
