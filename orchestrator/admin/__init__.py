"""What each ``orchestrator`` command does, besides running a worker or an adapter: produce events,
validate, list, publish, diff and draw journeys, pick a split's winner, simulate and backtest
journeys, explain a customer, print an output topic (tail), read statistics, run the demo.
``orchestrator.cli`` only parses arguments and calls in here. :func:`stop_on_signals` is how a
command that runs until stopped (``produce``, ``tail --follow``) takes Ctrl-C and SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[str], None]) -> Iterator[None]:
    """Inside a running event loop: the first SIGINT (Ctrl-C) or SIGTERM calls ``stop(signal name)``,
    a requested stop that the command ends cleanly (exit 0); a second one acts as usual, at once."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def requested(sig: signal.Signals) -> None:
        for s in signals:
            loop.remove_signal_handler(s)
        stop(sig.name)

    for sig in signals:
        loop.add_signal_handler(sig, requested, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
