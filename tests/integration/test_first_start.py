"""A worker's first start on a brand-new broker: Kafka's group coordinator is not there yet (it
creates its offsets topic on the first group), which is normal and logged once, at INFO.

Needs a broker that has never seen a consumer group, so this test starts its own, on four free
ports, with its own ORCH_HOME (the jars come from the shared cache).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time

import pytest

from tests.integration.harness import WorkerProcess

MARKERS = ("GroupCoordinatorNotAvailableError", "Marking the coordinator dead", "Coordinator Request failed")


def free_block(size: int = 4) -> int:
    """A first port such that it and the next ``size - 1`` are free (broker, controller, SASL, TLS)."""
    for _ in range(100):
        base = random.randint(20000, 60000)
        try:
            socks = []
            for port in range(base, base + size):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no block of free ports found")


def kafka(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "kafka", action], env=env, capture_output=True,
                          text=True, timeout=240)


@pytest.fixture
def new_broker(tmp_path):
    port = free_block()
    env = {k: v for k, v in os.environ.items() if k != "ORCH_BOOTSTRAP"}
    env.update(ORCH_HOME=str(tmp_path / "home"), ORCH_LOCAL_KAFKA_PORT=str(port))
    started = kafka("up", env)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"localhost:{port}"
    finally:
        kafka("down", env)


def test_first_start_logs_the_coordinator_wait_once_at_info(tmp_path, new_broker):
    w = WorkerProcess(tmp_path, extra_env={"ORCH_BOOTSTRAP": new_broker}).start()
    try:
        deadline = time.monotonic() + 120
        while "partitions assigned" not in w.log_path.read_text():
            assert time.monotonic() < deadline and w.exit_code() is None, w.log_tail()
            time.sleep(0.2)
    finally:
        w.stop()
    lines = w.log_path.read_text().splitlines()
    waits = [line for line in lines if any(m in line for m in MARKERS)]
    assert len(waits) == 1 and " INFO " in waits[0], waits
    assert not [line for line in lines if " ERROR " in line or " WARNING " in line], lines
