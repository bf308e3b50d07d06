"""Which answers the webhook adapter retries, the backoff with jitter, and the retry budget."""

from __future__ import annotations

import pytest

from orchestrator.adapters.retry import RetryPolicy, is_retryable, is_success, parse_retry_after


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599, 408, 409, 425, 429, None])
def test_server_errors_timeouts_and_throttling_are_retried(status):
    assert is_retryable(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422, 301, 302, 307])
def test_refusals_and_redirects_are_final(status):
    assert not is_retryable(status) and not is_success(status)


def test_success_is_any_2xx():
    assert all(is_success(s) for s in (200, 201, 202, 204, 299))
    assert not is_success(300) and not is_success(199)


def test_backoff_doubles_up_to_the_cap_with_equal_jitter():
    policy = RetryPolicy(budget_s=1000, base_s=0.5, cap_s=8.0)
    lows = [policy.backoff(n, rand=lambda: 0.0) for n in range(7)]
    highs = [policy.backoff(n, rand=lambda: 0.999999) for n in range(7)]
    assert lows == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert highs == pytest.approx([0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0], rel=1e-5)
    assert policy.backoff(10_000, rand=lambda: 0.5) == 6.0      # no overflow far out


def test_jitter_spreads_adapters_that_failed_together():
    import random
    policy = RetryPolicy()
    rng = random.Random(7)
    delays = {round(policy.backoff(3, rand=rng.random), 6) for _ in range(50)}
    assert len(delays) > 40 and min(delays) >= 2.0 and max(delays) < 4.0


def test_no_retry_starts_past_the_budget():
    policy = RetryPolicy(budget_s=10.0, base_s=1.0, cap_s=100.0)
    mid = lambda: 0.5  # noqa: E731 - a fixed random draw
    assert policy.next_delay(0, started=0.0, now=1.0, rand=mid) == 0.75
    assert policy.next_delay(2, started=0.0, now=6.0, rand=mid) == 3.0          # ends at 9 < 10
    assert policy.next_delay(2, started=0.0, now=7.0, rand=mid) is None         # would end at 10
    assert RetryPolicy(budget_s=0).next_delay(0, started=0.0, now=0.0, rand=mid) is None


def test_retry_after_is_honoured_within_the_budget():
    policy = RetryPolicy(budget_s=60.0, base_s=0.5)
    mid = lambda: 0.5  # noqa: E731
    assert policy.next_delay(0, started=0.0, now=1.0, retry_after=20.0, rand=mid) == 20.0
    assert policy.next_delay(0, started=0.0, now=1.0, retry_after=0.0, rand=mid) == 0.375
    assert policy.next_delay(0, started=0.0, now=1.0, retry_after=120.0, rand=mid) is None


def test_parse_retry_after_seconds_and_http_dates():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 3 ") == 3.0
    now = 1_700_000_000.0          # Tue, 14 Nov 2023 22:13:20 GMT
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now=now) == 0.0   # in the past: now
    for junk in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(junk) is None
