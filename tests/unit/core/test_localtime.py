"""Times of day in a customer's timezone (orchestrator/core/localtime.py): ``wait_until`` and a send
node's ``window``, across daylight-saving changes (SPEC §4.1: "DST-correct")."""

from __future__ import annotations

from datetime import date, timezone
from zoneinfo import ZoneInfo

import pytest

from orchestrator.core.localtime import (
    ALL_DAYS, Window, day_instant, format_days, next_time_of_day, parse_clock, window_opening,
)
from orchestrator.core.timeutil import format_ts
from tests.unit.core.helpers import ts

PARIS = ZoneInfo("Europe/Paris")        # 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET
NEW_YORK = ZoneInfo("America/New_York")  # 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST
WEEKDAYS = (0, 1, 2, 3, 4)


def clock(text: str) -> int:
    minute = parse_clock(text)
    assert minute is not None
    return minute


# ---------------------------------------------------------------------------- one instant per day
@pytest.mark.parametrize("tz, day, at, expected", [
    (timezone.utc, date(2026, 3, 10), "09:00", "2026-03-10T09:00:00Z"),
    (PARIS, date(2026, 3, 10), "09:00", "2026-03-10T08:00:00Z"),                 # CET, +01:00
    (PARIS, date(2026, 7, 10), "09:00", "2026-07-10T07:00:00Z"),                 # CEST, +02:00
    # spring forward: 02:00-02:59 does not exist; such a time is the instant of the jump (03:00 CEST)
    (PARIS, date(2026, 3, 29), "02:30", "2026-03-29T01:00:00Z"),
    (PARIS, date(2026, 3, 29), "02:00", "2026-03-29T01:00:00Z"),
    (PARIS, date(2026, 3, 29), "03:00", "2026-03-29T01:00:00Z"),
    (PARIS, date(2026, 3, 29), "01:59", "2026-03-29T00:59:00Z"),
    (NEW_YORK, date(2026, 3, 8), "02:30", "2026-03-08T07:00:00Z"),
    # fall back: 02:00-02:59 happens twice; such a time is its first occurrence (CEST)
    (PARIS, date(2026, 10, 25), "02:30", "2026-10-25T00:30:00Z"),
    (PARIS, date(2026, 10, 25), "03:00", "2026-10-25T02:00:00Z"),
    (NEW_YORK, date(2026, 11, 1), "01:30", "2026-11-01T05:30:00Z"),              # EDT, not 06:30Z (EST)
    # a half-hour jump, and a whole day a timezone skipped (Samoa, 2011-12-30)
    (ZoneInfo("Australia/Lord_Howe"), date(2026, 10, 4), "02:15", "2026-10-03T15:30:00Z"),
    (ZoneInfo("Pacific/Apia"), date(2011, 12, 30), "10:00", "2011-12-30T10:00:00Z"),
])
def test_a_time_of_day_is_one_instant_per_local_day(tz, day, at, expected) -> None:
    assert format_ts(day_instant(day, clock(at), tz)) == format_ts(ts(expected))


# ---------------------------------------------------------------------------- wait_until
def test_the_next_occurrence_in_the_customers_timezone() -> None:
    now = ts("2026-03-10T12:00:00Z")                                     # Tuesday, 13:00 in Paris
    assert next_time_of_day(now, PARIS, clock("09:00"), ALL_DAYS) == ts("2026-03-11T08:00:00Z")
    assert next_time_of_day(now, PARIS, clock("18:00"), ALL_DAYS) == ts("2026-03-10T17:00:00Z")
    assert next_time_of_day(now, timezone.utc, clock("18:00"), ALL_DAYS) == ts("2026-03-10T18:00:00Z")


def test_days_skip_to_the_next_allowed_day() -> None:
    friday_evening = ts("2026-03-13T19:00:00Z")
    assert next_time_of_day(friday_evening, timezone.utc, clock("09:00"), WEEKDAYS) == ts("2026-03-16T09:00:00Z")
    assert next_time_of_day(friday_evening, timezone.utc, clock("09:00"), (5,)) == ts("2026-03-14T09:00:00Z")
    assert next_time_of_day(friday_evening, timezone.utc, clock("20:00"), (4,)) == ts("2026-03-13T20:00:00Z")
    assert next_time_of_day(friday_evening, timezone.utc, clock("18:00"), (4,)) == ts("2026-03-20T18:00:00Z")


def test_inside_that_minute_is_now_unless_the_walk_already_left_it() -> None:
    for second in ("09:00:00", "09:00:59.999"):
        now = ts(f"2026-03-10T{second}Z")
        assert next_time_of_day(now, timezone.utc, clock("09:00"), ALL_DAYS) == now
        assert next_time_of_day(now, timezone.utc, clock("09:00"), ALL_DAYS, allow_now=False) == \
            ts("2026-03-11T09:00:00Z")
    assert next_time_of_day(ts("2026-03-10T09:01:00Z"), timezone.utc, clock("09:00"), ALL_DAYS) == \
        ts("2026-03-11T09:00:00Z")
    # that minute, but not an allowed day (Tuesday)
    assert next_time_of_day(ts("2026-03-10T09:00:10Z"), timezone.utc, clock("09:00"), (0,)) == \
        ts("2026-03-16T09:00:00Z")


def test_wait_until_a_time_the_clocks_skip_releases_at_the_jump() -> None:
    saturday_night = ts("2026-03-28T22:00:00Z")          # 23:00 CET, the night before the change
    assert next_time_of_day(saturday_night, PARIS, clock("02:30"), ALL_DAYS) == ts("2026-03-29T01:00:00Z")
    # 09:00 that day is CEST already
    assert next_time_of_day(saturday_night, PARIS, clock("09:00"), ALL_DAYS) == ts("2026-03-29T07:00:00Z")


def test_wait_until_a_time_the_clocks_repeat_releases_at_the_first_one_only() -> None:
    before = ts("2026-10-24T22:00:00Z")                  # 00:00 CEST on the day of the change
    assert next_time_of_day(before, PARIS, clock("02:30"), ALL_DAYS) == ts("2026-10-25T00:30:00Z")
    # between the first 02:30 (CEST) and the second (CET): that day's 02:30 is past
    between = ts("2026-10-25T00:45:00Z")                 # 02:45 CEST
    assert next_time_of_day(between, PARIS, clock("02:30"), ALL_DAYS) == ts("2026-10-26T01:30:00Z")
    # and during the second 02:30 itself it is not "that minute"
    second = ts("2026-10-25T01:30:20Z")                  # 02:30:20 CET
    assert next_time_of_day(second, PARIS, clock("02:30"), ALL_DAYS) == ts("2026-10-26T01:30:00Z")


# ---------------------------------------------------------------------------- window
OFFICE = Window(WEEKDAYS, clock("09:00"), clock("18:00"))


@pytest.mark.parametrize("now, expected", [
    ("2026-03-10T08:00:00Z", None),                      # Tuesday 09:00 Paris: opens exactly now
    ("2026-03-10T16:59:59Z", None),
    ("2026-03-10T17:00:00Z", "2026-03-11T08:00:00Z"),    # 18:00 Paris: closed (to is excluded)
    ("2026-03-10T06:00:00Z", "2026-03-10T08:00:00Z"),
    ("2026-03-13T18:00:00Z", "2026-03-16T08:00:00Z"),    # Friday evening: Monday morning
    ("2026-03-14T10:00:00Z", "2026-03-16T08:00:00Z"),    # Saturday
])
def test_a_window_on_weekdays_in_the_customers_timezone(now: str, expected: str | None) -> None:
    got = window_opening(ts(now), PARIS, OFFICE)
    assert got == (None if expected is None else ts(expected))


def test_a_window_across_midnight_belongs_to_the_day_it_opens() -> None:
    friday_night = Window((4,), clock("22:00"), clock("02:00"))
    assert window_opening(ts("2026-03-13T23:00:00Z"), timezone.utc, friday_night) is None      # Friday 23:00
    assert window_opening(ts("2026-03-14T01:59:00Z"), timezone.utc, friday_night) is None      # Saturday 01:59
    assert window_opening(ts("2026-03-14T02:00:00Z"), timezone.utc, friday_night) == ts("2026-03-20T22:00:00Z")
    # Thursday 01:00 is not inside: Wednesday's window would be, and Wednesday is not listed
    assert window_opening(ts("2026-03-12T01:00:00Z"), timezone.utc, friday_night) == ts("2026-03-13T22:00:00Z")


def test_a_window_of_whole_days() -> None:
    weekend = Window((5, 6))
    assert window_opening(ts("2026-03-14T00:00:00Z"), timezone.utc, weekend) is None
    assert window_opening(ts("2026-03-15T23:59:59Z"), timezone.utc, weekend) is None
    assert window_opening(ts("2026-03-16T00:00:00Z"), timezone.utc, weekend) == ts("2026-03-21T00:00:00Z")
    assert window_opening(ts("2026-03-13T20:00:00Z"), PARIS, weekend) == ts("2026-03-13T23:00:00Z")  # Paris midnight


def test_a_window_on_the_spring_forward_day() -> None:
    # 01:30-02:30 Paris on 2026-03-29: from 01:30 CET to the jump (02:30 does not exist): 30 minutes
    w = Window(ALL_DAYS, clock("01:30"), clock("02:30"))
    assert window_opening(ts("2026-03-29T00:30:00Z"), PARIS, w) is None          # 01:30 CET
    assert window_opening(ts("2026-03-29T00:59:59Z"), PARIS, w) is None
    assert window_opening(ts("2026-03-29T01:00:00Z"), PARIS, w) == ts("2026-03-29T23:30:00Z")  # 03:00 CEST
    # a window entirely inside the skipped hour is closed that day, open the next
    gap = Window(ALL_DAYS, clock("02:10"), clock("02:50"))
    assert window_opening(ts("2026-03-28T23:00:00Z"), PARIS, gap) == ts("2026-03-30T00:10:00Z")
    # a window that opens in the skipped hour opens at the jump
    late = Window(ALL_DAYS, clock("02:30"), clock("05:00"))
    assert window_opening(ts("2026-03-28T23:00:00Z"), PARIS, late) == ts("2026-03-29T01:00:00Z")
    assert window_opening(ts("2026-03-29T01:00:00Z"), PARIS, late) is None


def test_a_window_on_the_fall_back_day() -> None:
    # 02:00-02:30 Paris on 2026-10-25: the first pass (CEST) only; the second pass (CET) is outside
    w = Window(ALL_DAYS, clock("02:00"), clock("02:30"))
    assert window_opening(ts("2026-10-25T00:10:00Z"), PARIS, w) is None                      # 02:10 CEST
    assert window_opening(ts("2026-10-25T01:10:00Z"), PARIS, w) == ts("2026-10-26T01:00:00Z")  # 02:10 CET
    # a window across the repeated hour lasts an hour longer that day
    w = Window(ALL_DAYS, clock("01:00"), clock("04:00"))
    assert window_opening(ts("2026-10-24T23:00:00Z"), PARIS, w) is None                      # 01:00 CEST
    assert window_opening(ts("2026-10-25T02:59:59Z"), PARIS, w) is None                      # 03:59:59 CET
    assert window_opening(ts("2026-10-25T03:00:00Z"), PARIS, w) == ts("2026-10-26T00:00:00Z")


def test_days_are_written_short() -> None:
    assert format_days(ALL_DAYS) == "every day"
    assert format_days(WEEKDAYS) == "mon-fri"
    assert format_days((0, 1, 2, 4, 5)) == "mon-wed, fri, sat"
    assert format_days((5, 6)) == "sat, sun"
    assert str(OFFICE) == "mon-fri 09:00-18:00"
    assert str(Window((5, 6))) == "sat, sun"


@pytest.mark.parametrize("text, minute", [("09:00", 540), ("9:00", 540), ("00:00", 0), ("23:59", 1439)])
def test_clock_times(text: str, minute: int) -> None:
    assert parse_clock(text) == minute


@pytest.mark.parametrize("bad", ["24:00", "9", "09:60", "9am", "", None, 540, "09:00:00"])
def test_bad_clock_times(bad: object) -> None:
    assert parse_clock(bad) is None
