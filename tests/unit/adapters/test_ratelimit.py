"""The webhook adapter's token bucket and ``--max-per-second`` parsing (no Kafka, no sleeping:
the clock is injected, and the asyncio tests run on an event loop whose clock moves only when it
would otherwise sleep)."""

from __future__ import annotations

import asyncio
import selectors

import pytest

from orchestrator.adapters.ratelimit import TokenBucket, parse_rates, take


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop on a clock of its own: when it would sleep until its next timer, the clock
    jumps there instead, so timers fire exactly when due. A test stages an event-loop stall by
    moving the clock from inside a task (time passes while nothing else runs)."""

    def __init__(self) -> None:
        self.now = 1000.0
        loop = self

        class Selector(selectors.DefaultSelector):
            def select(self, timeout: float | None = None):  # type: ignore[override]
                if timeout is None:
                    raise RuntimeError("nothing is scheduled: the test would wait forever")
                loop.now += timeout
                return super().select(0)

        super().__init__(Selector())

    def time(self) -> float:
        return self.now


def run_virtual(make) -> VirtualLoop:  # noqa: ANN001 - make(loop) -> coroutine
    loop = VirtualLoop()
    try:
        loop.run_until_complete(make(loop))
    finally:
        loop.close()
    return loop


def most_in_one_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))


def send_times(bucket: TokenBucket, n: int, now: float) -> list[float]:
    """When each of ``n`` requests, all waiting from ``now`` and served in order, goes out."""
    times = []
    for _ in range(n):
        while (wait := bucket.try_take(now)) > 0:
            now += wait
        times.append(now)
    return times


def test_burst_one_spaces_requests_by_one_over_the_rate():
    bucket = TokenBucket(5.0, now=0.0)
    assert send_times(bucket, 4, 0.0) == pytest.approx([0.0, 0.2, 0.4, 0.6])


def test_in_any_span_at_most_rate_times_span_plus_burst_go_out():
    rate, burst = 10.0, 3
    bucket = TokenBucket(rate, burst, now=0.0)
    times = send_times(bucket, 50, 0.0)
    assert times[:3] == [0.0, 0.0, 0.0]                  # the burst at once
    for i, start in enumerate(times):
        for span in (0.05, 0.5, 1.0, 2.0):
            inside = sum(1 for t in times[i:] if t < start + span)
            assert inside <= rate * span + burst + 1e-9


def test_idle_time_refills_only_up_to_the_burst():
    bucket = TokenBucket(2.0, 2, now=0.0)
    assert send_times(bucket, 2, 0.0) == [0.0, 0.0]
    # Ten idle seconds are worth 20 tokens, but the bucket holds 2.
    assert send_times(bucket, 3, 10.0) == pytest.approx([10.0, 10.0, 10.5])


def test_no_token_is_taken_before_its_request_goes():
    bucket = TokenBucket(4.0, now=100.0)
    assert bucket.try_take(100.0) == 0.0
    assert bucket.try_take(100.0) == pytest.approx(0.25)     # told to come back: nothing taken
    assert bucket.try_take(100.1) == pytest.approx(0.15)     # so the wait shrinks as time passes
    assert bucket.try_take(100.25) == 0.0


def test_a_clock_that_goes_back_gives_no_tokens():
    bucket = TokenBucket(1.0, now=50.0)
    assert bucket.try_take(50.0) == 0.0
    assert bucket.try_take(49.0) == pytest.approx(1.0)       # no refill from a step back
    assert bucket.try_take(50.5) == pytest.approx(0.5)


@pytest.mark.parametrize("rate,burst", [(0, 1), (-1, 1), (1, 0)])
def test_nonsense_rates_are_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, now=0.0)


@pytest.mark.parametrize("burst", [1, 5])
def test_after_an_event_loop_stall_the_waiting_requests_still_go_at_the_rate(burst):
    rate, n = 50.0, 300
    sent: list[float] = []

    async def scenario(loop: VirtualLoop) -> None:
        bucket = TokenBucket(rate, burst, now=loop.time())
        stopping = asyncio.Event()

        async def request() -> None:
            assert await take(bucket, stopping, clock=loop.time) is not None
            sent.append(loop.time())

        async def stall() -> None:
            await asyncio.sleep(0.5)
            loop.now += 2.0          # the loop is held up for 2 s (a blocking call, a long pause)

        await asyncio.gather(stall(), *(request() for _ in range(n)))

    run_virtual(scenario)
    assert len(sent) == n
    assert most_in_one_second(sent) <= rate + burst      # not the ~100 overdue ones at once


def test_waiting_callers_are_served_in_the_order_they_asked():
    order: list[int] = []

    async def scenario(loop: VirtualLoop) -> None:
        bucket = TokenBucket(10.0, now=loop.time())
        stopping = asyncio.Event()

        async def request(i: int) -> None:
            await asyncio.sleep(i * 0.001)       # ask in the order of i
            waited = await take(bucket, stopping, clock=loop.time)
            assert waited == pytest.approx(max(0.0, i * 0.1 - i * 0.001))
            order.append(i)

        await asyncio.gather(*(request(i) for i in reversed(range(8))))

    run_virtual(scenario)
    assert order == list(range(8))


def test_take_gives_up_when_stopping():
    async def scenario(loop: VirtualLoop) -> None:
        bucket = TokenBucket(0.01, now=loop.time())   # one token, then one per 100 s
        stopping = asyncio.Event()
        assert await take(bucket, stopping, clock=loop.time) == 0.0
        started = loop.time()
        waiter = asyncio.ensure_future(take(bucket, stopping, clock=loop.time))
        queued = asyncio.ensure_future(take(bucket, stopping, clock=loop.time))
        await asyncio.sleep(10)
        stopping.set()
        assert await waiter is None and await queued is None
        assert loop.time() - started == pytest.approx(10)    # neither waited for its token
        assert await take(None, stopping) == 0.0      # no bucket: no limit

    run_virtual(scenario)


def test_parse_rates_plain_and_per_channel():
    channels = ("email", "push", "sms")
    assert parse_rates([], channels) == {}
    assert parse_rates(["20"], channels) == {"email": 20.0, "push": 20.0, "sms": 20.0}
    assert parse_rates(["sms=2.5"], channels) == {"sms": 2.5}
    # CHANNEL=RATE wins over a plain number, whichever comes first.
    assert parse_rates(["sms=1", "50"], channels) == {"email": 50.0, "push": 50.0, "sms": 1.0}
    assert parse_rates(["50,sms=1"], channels) == parse_rates(["sms=1,50"], channels)


@pytest.mark.parametrize("value,message", [("fast", "a number or CHANNEL=NUMBER"), ("0", "between 0.001"),
                                           ("sms=-1", "between 0.001"), ("fax=3", "does not consume"),
                                           ("inf", "between 0.001"), ("1e-300", "between 0.001"),
                                           ("5,7", "every channel two rates"), ("sms=1,sms=2", "channel sms two")])
def test_parse_rates_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        parse_rates([value], ("email", "sms"))
