"""The one live progress line of the command-line tools (``simulate``, ``stats``, ``demo``, the
benchmarks): rewritten in place on a terminal; elsewhere one line every ``every_s`` seconds, or
nothing at all with ``tty_only`` (so a pipeline's output stays clean). :func:`ticking` shows the
seconds a step has been running while the step blocks (``make run``'s install, broker, worker).

Standard library only: ``make run`` uses it with the system Python, before ``.venv`` exists.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO


class ProgressLine:
    def __init__(self, stream: TextIO | None = None, *, every_s: float = 5.0, tty_only: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.enabled = self.tty or not tty_only
        self.every_s = every_s
        self._last = 0.0
        self._width = 0

    def show(self, text: str, *, force: bool = False) -> None:
        """Show ``text`` now on a terminal, else at most once every ``every_s`` (``force``: now)."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + text + " " * max(0, self._width - len(text)))
            self.stream.flush()
            self._width = len(text)
        elif force or time.monotonic() - self._last >= self.every_s:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = time.monotonic()

    def clear(self) -> None:
        """Remove the line from a terminal (nothing to do elsewhere)."""
        if self.tty and self._width:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
        self._width = 0

    def done(self, text: str | None = None) -> None:
        """End the line, with a last ``text`` if given."""
        if text is not None:
            self.show(text, force=True)
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
        self._width = 0


@contextlib.contextmanager
def ticking(text: str, stream: TextIO | None = None, *, every_s: float = 5.0) -> Iterator[None]:
    """``text`` and the seconds since the block began, while the block runs (it may block: a thread
    keeps the time), every second on a terminal, every ``every_s`` elsewhere; when the block ends,
    ``text`` with ``done in N s`` (or ``stopped after N s`` if it raised)."""
    line = ProgressLine(stream or sys.stdout, every_s=every_s)
    started = time.monotonic()
    finished = threading.Event()

    def seconds() -> str:
        return f"{time.monotonic() - started:.0f} s"

    def tick() -> None:
        while not finished.wait(1.0):
            line.show(f"{text} {seconds()}")

    line.show(text, force=True)
    thread = threading.Thread(target=tick, name="progress", daemon=True)
    thread.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        finished.set()
        thread.join()
        line.done(f"{text} {'done in' if ok else 'stopped after'} {seconds()}")
