"""The one live progress line of the command-line tools (``simulate``, ``stats``, ``demo``, the
benchmarks): rewritten in place on a terminal; elsewhere one line every ``every_s`` seconds, or
nothing at all with ``tty_only`` (so a pipeline's output stays clean)."""

from __future__ import annotations

import sys
import time
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
