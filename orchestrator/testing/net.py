"""Small network helpers shared by the demo, the benchmarks and the test harnesses."""

from __future__ import annotations

import socket

from orchestrator.config import default_bootstrap


def broker_reachable(bootstrap: str | None = None, timeout_s: float = 5.0) -> bool:
    """Whether the first bootstrap server accepts a TCP connection."""
    host, _, port = (bootstrap or default_bootstrap()).split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
