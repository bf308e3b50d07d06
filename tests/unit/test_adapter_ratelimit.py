"""The webhook adapter's token bucket and ``--max-per-second`` parsing (no Kafka, no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.adapters.ratelimit import TokenBucket, parse_rates, take


def schedule(bucket: TokenBucket, n: int, now: float) -> list[float]:
    """When each of ``n`` requests asked for at ``now`` may go out."""
    return [now + bucket.reserve(now) for _ in range(n)]


def test_burst_one_spaces_requests_by_one_over_the_rate():
    bucket = TokenBucket(5.0, now=0.0)
    assert schedule(bucket, 4, 0.0) == pytest.approx([0.0, 0.2, 0.4, 0.6])


def test_in_any_span_at_most_rate_times_span_plus_burst_go_out():
    rate, burst = 10.0, 3
    bucket = TokenBucket(rate, burst, now=0.0)
    times = schedule(bucket, 50, 0.0)
    assert times[:3] == [0.0, 0.0, 0.0]                  # the burst at once
    for i, start in enumerate(times):
        for span in (0.05, 0.5, 1.0, 2.0):
            inside = sum(1 for t in times[i:] if t < start + span)
            assert inside <= rate * span + burst + 1e-9


def test_idle_time_refills_only_up_to_the_burst():
    bucket = TokenBucket(2.0, 2, now=0.0)
    assert schedule(bucket, 2, 0.0) == [0.0, 0.0]
    # Ten idle seconds are worth 20 tokens, but the bucket holds 2.
    assert schedule(bucket, 3, 10.0) == pytest.approx([10.0, 10.0, 10.5])


def test_waiting_callers_queue_in_order():
    bucket = TokenBucket(4.0, now=100.0)
    first = bucket.reserve(100.0)
    second = bucket.reserve(100.0)
    later = bucket.reserve(100.1)              # asked later: served after the two before it
    assert (first, second) == (0.0, pytest.approx(0.25))
    assert later == pytest.approx(0.4)         # due at 100.5, asked at 100.1


def test_a_clock_that_goes_back_gives_no_tokens():
    bucket = TokenBucket(1.0, now=50.0)
    assert bucket.reserve(50.0) == 0.0
    assert bucket.reserve(49.0) == pytest.approx(2.0)   # no refill from a step back; due at 51


@pytest.mark.parametrize("rate,burst", [(0, 1), (-1, 1), (1, 0)])
def test_nonsense_rates_are_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, now=0.0)


async def test_take_gives_up_when_stopping():
    bucket = TokenBucket(0.01, now=0.0)        # one token, then one per 100 s
    stopping = asyncio.Event()
    assert await take(bucket, stopping) == 0.0
    waiter = asyncio.ensure_future(take(bucket, stopping))
    await asyncio.sleep(0.01)
    stopping.set()
    assert await asyncio.wait_for(waiter, 5) is None
    assert await take(None, stopping) == 0.0   # no bucket: no limit


def test_parse_rates_plain_and_per_channel():
    channels = ("email", "push", "sms")
    assert parse_rates([], channels) == {}
    assert parse_rates(["20"], channels) == {"email": 20.0, "push": 20.0, "sms": 20.0}
    assert parse_rates(["sms=2.5"], channels) == {"sms": 2.5}
    # CHANNEL=RATE wins over a plain number, whichever comes first.
    assert parse_rates(["sms=1", "50"], channels) == {"email": 50.0, "push": 50.0, "sms": 1.0}
    assert parse_rates(["50,sms=1"], channels) == parse_rates(["sms=1,50"], channels)


@pytest.mark.parametrize("value,message", [("fast", "a number or CHANNEL=NUMBER"), ("0", "above 0"),
                                           ("sms=-1", "above 0"), ("fax=3", "does not consume"),
                                           ("inf", "above 0")])
def test_parse_rates_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        parse_rates([value], ("email", "sms"))
