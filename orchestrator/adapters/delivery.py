"""Steps 3 and 4 of :mod:`orchestrator.adapters.webhook`: one body POSTed until its answer is final.

3. **Send**: take a token of the channel's bucket (``--max-per-second``; requests to
   ``--suppressions-url`` take none), check the cancels again, record ``I`` (in flight) in the
   store before the first attempt, POST the body unchanged with ``Idempotency-Key: <id>`` and the
   headers from the environment.
4. **Answer**: 2xx is delivered. 5xx, 408, 409, 425, 429, a timeout or a connection error is
   retried after a backoff (:mod:`orchestrator.adapters.retry`) from 3 while ``--retry-budget``
   allows; any other answer (redirects are not followed: a POST must not turn into a GET), or the
   end of the budget, is failed, with the detail its dead letter carries. The first failed attempt
   of an id is logged at INFO (its id, the attempt, the status or error, the next backoff), each
   further one at DEBUG; the final failure is logged at WARNING where it is dead-lettered.

What the answer means for the record (feedback, dead letter, the store's ``D`` / ``F``) is decided
by :mod:`orchestrator.adapters.records`. A detail names the status, the URL's origin (scheme, host
and port only: a path may carry tokens) and the first 200 characters of the answer, never a
header value.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from orchestrator import __version__
from orchestrator.adapters import dedup
from orchestrator.adapters.dedup import DedupStore
from orchestrator.adapters.lanes import GiveUp
from orchestrator.adapters.metrics import AdapterMetrics
from orchestrator.adapters.options import WebhookOptions, url_origin
from orchestrator.adapters.ratelimit import TokenBucket, take
from orchestrator.adapters.retry import is_retryable, is_success, parse_retry_after
from orchestrator.kafkaio.service import wall_ms

MAX_ANSWER_BYTES = 64 * 1024      # read of an answer's body (the dead letter keeps 200 characters)
KIND_NAMES = {dedup.ACTION: "action", dedup.SUPPRESSION: "suppression"}

log = logging.getLogger("orchestrator.adapter")


@dataclass
class Answer:
    status: int | None            # None: timeout or connection error
    outcome: str                  # the `outcome` label: 2xx ... 5xx, timeout, connection_error
    detail: str
    retry_after: float | None = None

    @property
    def short(self) -> str:
        """The status or the kind of error, without the answer's body: what a log line may say."""
        return f"HTTP {self.status}" if self.status is not None else self.outcome.replace("_", " ")


class Delivery:
    """The adapter's HTTP side: one client session, a token bucket per rate-limited channel, the
    in-flight marks in the store, the request metrics."""

    def __init__(self, options: WebhookOptions, store: DedupStore, metrics: AdapterMetrics) -> None:
        self.options, self.store, self.metrics = options, store, metrics
        started = time.monotonic()
        self.buckets = {c: TokenBucket(r, options.burst, now=started) for c, r in options.rates.items()}
        self.origin = {options.url: url_origin(options.url)}
        if options.suppressions_url:
            self.origin[options.suppressions_url] = url_origin(options.suppressions_url)
        self.session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        """Start the client session (in the running event loop)."""
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            headers={"User-Agent": f"orchestrator-adapter-webhook/{__version__}"})

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def send(self, kind: bytes, ident: str, url: str, body: bytes, target: str, stopping: asyncio.Event, *,
                   rate_limited: bool, cancelled: Callable[[], bool] | None = None,
                   check_first: bool = True) -> tuple[str, Answer, str]:
        """Steps 3-4: ``("delivered" | "failed" | "cancelled", last answer, dead-letter detail)``.
        ``target`` is the metrics' label (a channel, or ``suppressions``) and, when
        ``rate_limited``, the channel whose bucket is taken from. Raises :class:`GiveUp` when
        ``stopping`` is set while waiting for a token or a retry."""
        store, m, o = self.store, self.metrics, self.options
        bucket = self.buckets.get(target) if rate_limited else None
        policy = o.retry
        started: float | None = None
        retry = 0
        answer = Answer(None, "timeout", "")
        while True:
            waited = await take(bucket, stopping)
            if waited is None:
                raise GiveUp
            if waited:
                m.rate_limit_wait.labels(target).inc(waited)
            if cancelled is not None and (started is not None or check_first) and cancelled():
                return "cancelled", answer, ""
            now = time.monotonic()
            if started is None:
                started = now
                store.put(kind, ident, dedup.IN_FLIGHT, wall_ms())
                timeout = o.timeout_s
            else:
                timeout = min(o.timeout_s, max(0.05, started + policy.budget_s - now))
            answer = await self._request(url, body, ident, target, timeout)
            if answer.status is not None and is_success(answer.status):
                return "delivered", answer, ""
            if not is_retryable(answer.status):
                return "failed", answer, answer.detail
            delay = policy.next_delay(retry, started=started, now=time.monotonic(), retry_after=answer.retry_after)
            if delay is None:
                return "failed", answer, (f"{answer.detail} (gave up after {retry + 1} attempt{'s' if retry else ''} "
                                          f"in {time.monotonic() - started:.1f} s; --retry-budget is "
                                          f"{policy.budget_s:g} s)")
            m.retries.labels(target).inc()
            # Ids only: an action or suppression id is not personal data, its customer id and the
            # answer's body (which may echo the request) stay out of the log.
            log.log(logging.INFO if retry == 0 else logging.DEBUG,
                    "%s %s (%s): attempt %d answered %s; retrying in %.1f s%s", KIND_NAMES.get(kind, "id"), ident,
                    target, retry + 1, answer.short, delay,
                    " (further attempts are logged at debug level, a final failure as a warning)" if retry == 0 else "")
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except asyncio.TimeoutError:
                retry += 1
                continue
            raise GiveUp

    async def _request(self, url: str, body: bytes, ident: str, target: str, timeout_s: float) -> Answer:
        """One POST; never raises for what the network or the server does."""
        assert self.session is not None
        m, origin = self.metrics, self.origin[url]
        headers = {**self.options.headers, "Content-Type": "application/json", "Idempotency-Key": ident}
        m.in_flight.inc()
        started = time.perf_counter()
        try:
            async with self.session.post(url, data=body, headers=headers, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                text = await resp.content.read(MAX_ANSWER_BYTES)
                status, reason = resp.status, resp.reason or ""
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except asyncio.TimeoutError:
            answer = Answer(None, "timeout", f"no answer from {origin} within {round(timeout_s, 2):g} s")
        except aiohttp.ClientError as exc:
            answer = Answer(None, "connection_error", f"cannot reach {origin} ({_describe_error(exc)})")
        else:
            snippet = " ".join(text.decode("utf-8", errors="replace").split())[:200]
            answer = Answer(status, _status_class(status),
                            f"HTTP {status} {reason} from {origin}" + (f": {snippet}" if snippet else ""),
                            retry_after)
        finally:
            m.in_flight.dec()
            m.request_seconds.labels(target).observe(time.perf_counter() - started)
        m.requests.labels(target, answer.outcome).inc()
        return answer


def _status_class(status: int) -> str:
    if status >= 500:
        return "5xx"
    if status >= 400:
        return "4xx"
    if status >= 300 or status < 200:
        return "3xx"
    return "2xx"


def _describe_error(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    reason = getattr(os_error, "strerror", None)
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
