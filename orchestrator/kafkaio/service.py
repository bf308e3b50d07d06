"""The process shell the worker and the webhook adapter share: the event loop (uvloop), SIGINT and
SIGTERM as a requested stop, the consumer group's rebalance callbacks, periodic jobs, the consumer
lag gauge and the one wall clock.

A service is an object with ``async run()`` and ``stop()``; :func:`serve` runs one until it returns,
``stop()`` being what a signal does. What each service does inside is its own business
(:mod:`orchestrator.runtime.worker`, :mod:`orchestrator.adapters.webhook`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

log = logging.getLogger("orchestrator")


def wall_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class Service(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


def serve(make: Callable[[], Service], *, started: Callable[[Service], None] | None = None) -> None:
    """Run the service ``make()`` builds (inside the event loop) until it returns; SIGINT and SIGTERM
    call its ``stop()``. ``started`` runs once it is built (a log line, GC tuning)."""
    import uvloop

    uvloop.install()

    async def main() -> None:
        service = make()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        if started is not None:
            started(service)
        await service.run()

    asyncio.run(main())


class Rebalances(ConsumerRebalanceListener):
    """The consumer group's partition moves, handed to two callables (plain or async) with the
    partitions as a list."""

    def __init__(self, assigned: Callable[[list[TopicPartition]], Any],
                 revoked: Callable[[list[TopicPartition]], Any]) -> None:
        self._assigned, self._revoked = assigned, revoked

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        result = self._revoked(list(revoked))
        if inspect.isawaitable(result):
            await result

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        result = self._assigned(list(assigned))
        if inspect.isawaitable(result):
            await result


async def every(interval_s: float, job: Callable[[], Awaitable[None]], *, keep_going: bool = True) -> None:
    """Run ``job`` every ``interval_s`` seconds until cancelled. A job that raises is logged and run
    again next time (``keep_going``), or ends the loop with its exception."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a periodic job must keep running
            if not keep_going:
                raise
            log.exception("periodic %s failed", getattr(job, "__name__", "job"))


def observe_lag(consumer: AIOKafkaConsumer, gauge: Any, done: Callable[[TopicPartition], int | None],
                partitions: Iterable[TopicPartition]) -> None:
    """Set ``gauge{topic, partition}`` to each partition's end as the consumer last saw it minus
    ``done(tp)``, the next offset the service will commit; partitions no longer assigned drop out."""
    gauge.clear()
    for tp in partitions:
        highwater = consumer.highwater(tp)
        committed = done(tp)
        if highwater is not None and committed is not None:
            gauge.labels(tp.topic, str(tp.partition)).set(max(0, highwater - committed))
