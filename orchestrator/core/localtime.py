"""Times of day in a customer's timezone: ``wait_until`` and a send node's ``window`` (docs/journeys.md#times-of-day).

A time of day names one instant per calendar day of the customer's timezone, also on the two
days a year when daylight saving time changes the clocks:

- **Skipped** (spring forward): a time the clocks jump over means the instant of the jump.
  ``02:30`` in Europe/Paris on 2026-03-29 (clocks go from 02:00 CET to 03:00 CEST) is
  03:00 CEST, 01:00 UTC.
- **Repeated** (fall back): a time the clocks show twice means the first time.
  ``02:30`` in Europe/Paris on 2026-10-25 (clocks go from 03:00 CEST back to 02:00 CET) is
  02:30 CEST, 00:30 UTC; the second 02:30 (CET) is not that day's 02:30.

So ``wait_until`` releases a customer at most once per allowed day, and a ``window`` is one
interval of instants per allowed day: from that day's ``from`` to that day's ``to`` (the next
day's, when ``to`` is not after ``from``: a window across midnight belongs to the day it opens).
A window whose ``from`` and ``to`` fall into the same skipped hour is empty that day.

Pure: no wall clock; every function takes ``now_ms`` and a ``tzinfo``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from functools import lru_cache

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")   # index = date.weekday()
ALL_DAYS: tuple[int, ...] = tuple(range(7))
MINUTE_MS = 60_000
DAY_MS = 86_400_000
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_HORIZON_DAYS = 16          # any weekday occurs within it, with room for a day a timezone skipped


def parse_clock(value: object) -> int | None:
    """``"09:00"`` -> minutes after local midnight (540); ``None`` if it is not ``H:MM``/``HH:MM``."""
    m = _CLOCK.match(value) if isinstance(value, str) else None
    return int(m.group(1)) * 60 + int(m.group(2)) if m else None


def format_clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def format_days(days: tuple[int, ...]) -> str:
    """``(0, 1, 2, 3, 4)`` -> ``mon-fri``; runs of three or more days are joined with a dash."""
    if tuple(days) == ALL_DAYS:
        return "every day"
    parts: list[str] = []
    run: list[int] = []
    for d in [*sorted(days), None]:
        if d is not None and run and d == run[-1] + 1:
            run.append(d)
            continue
        if run:
            parts.append(f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}" if len(run) >= 3
                         else ", ".join(DAY_NAMES[x] for x in run))
        run = [d] if d is not None else []
    return ", ".join(parts)


@dataclass(frozen=True)
class Window:
    """When a send node may send: on ``days`` (weekday numbers, Monday 0), between ``start_min``
    and ``end_min`` (minutes after local midnight; ``end_min <= start_min`` runs across midnight),
    or the whole day when both are ``None``."""

    days: tuple[int, ...] = ALL_DAYS
    start_min: int | None = None
    end_min: int | None = None

    def __str__(self) -> str:
        hours = "" if self.start_min is None or self.end_min is None else \
            f" {format_clock(self.start_min)}-{format_clock(self.end_min)}"
        return f"{format_days(self.days)}{hours}"


def _ms(dt: datetime) -> int:
    return int(dt.timestamp()) * 1000          # whole minutes of local time: whole seconds


def _local_date(now_ms: int, tz: tzinfo) -> date:
    return datetime.fromtimestamp(now_ms / 1000, tz).date()


def day_instant(day: date, minute: int, tz: tzinfo) -> int:
    """The instant (epoch ms) that is ``minute`` after midnight on local ``day`` (see the module docstring)."""
    naive = datetime(day.year, day.month, day.day, minute // 60, minute % 60)
    first = _ms(naive.replace(tzinfo=tz))                   # fold=0: the first of a repeated time
    if datetime.fromtimestamp(first / 1000, tz).replace(tzinfo=None) == naive:
        return first
    # Skipped: fold=0 reads it with the offset before the jump (an instant after the jump), fold=1
    # with the offset after it (an instant before the jump). The jump is the first instant between
    # them whose local time is later than ``naive``.
    lo, hi = _ms(naive.replace(tzinfo=tz, fold=1)) // 1000, first // 1000
    if lo >= hi:                                            # not a jump zoneinfo describes: keep fold=0
        return first
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) > naive:
            hi = mid
        else:
            lo = mid
    return hi * 1000


def next_time_of_day(now_ms: int, tz: tzinfo, minute: int, days: tuple[int, ...], *, allow_now: bool = True) -> int:
    """When ``wait_until`` releases: ``now_ms`` itself if it is inside that minute of an allowed
    day (and ``allow_now``), else the next instant that is ``minute`` on an allowed day."""
    today = _local_date(now_ms, tz)
    for k in range(-1, _HORIZON_DAYS):
        d = today + timedelta(days=k)
        if d.weekday() not in days:
            continue
        t = day_instant(d, minute, tz)
        if allow_now and t <= now_ms < t + MINUTE_MS:
            return now_ms
        if t > now_ms:
            return t
    return now_ms + 7 * DAY_MS      # not reached: every weekday occurs within the horizon


@lru_cache(maxsize=4096)
def window_interval(w: Window, day: date, tz: tzinfo) -> tuple[int, int]:
    """[open, close) of the window that opens on local ``day`` (empty when open >= close). Remembered:
    every customer of a timezone asks for the same few days of the same windows."""
    if w.start_min is None or w.end_min is None:
        return day_instant(day, 0, tz), day_instant(day + timedelta(days=1), 0, tz)
    close_day = day if w.start_min < w.end_min else day + timedelta(days=1)
    return day_instant(day, w.start_min, tz), day_instant(close_day, w.end_min, tz)


def window_opening(now_ms: int, tz: tzinfo, w: Window) -> int | None:
    """``None`` if ``now_ms`` is inside the window, else the instant it next opens."""
    today = _local_date(now_ms, tz)
    for k in range(-1, _HORIZON_DAYS):                      # yesterday: a window across midnight
        d = today + timedelta(days=k)
        if d.weekday() not in w.days:
            continue
        opens, closes = window_interval(w, d, tz)
        if closes <= now_ms or opens >= closes:
            continue
        return None if opens <= now_ms else opens
    return None                     # not reached: a window has at least one non-empty day a week
