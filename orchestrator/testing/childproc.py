"""A child process with its output in a log file.

What the integration tests, the fault suite and the benchmarks share when they run
workers (or baselines) as real processes: start, exit code, stop with a signal then SIGKILL,
and the tail of the log for error messages.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import IO


class ChildProcess:
    """``argv`` with ``env`` (read at :meth:`start`, so it may be changed before), output appended to
    ``log_path``."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, *, cwd: Path | None = None) -> None:
        self.argv, self.env, self.log_path, self.cwd = argv, env, log_path, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=None if self.cwd is None else str(self.cwd),
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def exit_code(self) -> int | None:
        """The exit code once the process has ended; ``None`` while it runs or before it started."""
        return None if self.proc is None else self.proc.poll()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int | None:
        """Send ``sig`` and wait; SIGKILL after ``timeout_s``. The exit code (``None`` if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"
