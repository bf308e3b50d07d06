"""One worker per data folder: an exclusive lock on ``<ORCH_DATA_DIR>/worker.lock``.

:func:`claim` takes it before the worker does anything else (before it creates topics or joins
its consumer group) and holds it for the life of the process. Without it, a second worker on the
same folder would learn that RocksDB refuses it a partition's database only once that partition
was assigned to it: it would stay in the group holding partitions it can never process.

The lock is ``flock``: the kernel drops it when the process ends, however it ends (SIGKILL
included), so the file left behind never blocks a restart. The file holds the pid of the worker
that has it, for the error message of the next one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from orchestrator.errors import ConfigError

LOCK_NAME = "worker.lock"
_held: list[int] = []              # the descriptors holding a lock


def claim(data_dir: str | Path) -> None:
    """Hold ``data_dir`` for this process alone until it ends; :class:`ConfigError` (one sentence:
    the folder, who has it, what to do) when another process holds it."""
    folder = Path(data_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot use the data folder {folder} ({exc.strerror or exc}); set ORCH_DATA_DIR "
                          "to a folder this worker may write") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise ConfigError(f"another worker{holder} uses the data folder {folder}: stop it, or give this "
                          "worker a folder of its own with ORCH_DATA_DIR") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held.append(fd)               # never closed: the lock lasts as long as the process


def _holder(fd: int) -> str:
    """`` (pid N)`` as the holder of the lock wrote it, or '' if it has not written it yet."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f" (pid {text})" if text.isdigit() else ""
