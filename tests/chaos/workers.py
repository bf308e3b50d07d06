"""The workers of a scenario: real ``orchestrator worker`` processes the suite starts, kills,
stops, wipes and restarts, and watches through their ``/metrics``.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import time
from pathlib import Path

from orchestrator.observability.scrape import scrape_port, total
from orchestrator.testing.net import free_port
from orchestrator.testing.worker import WORKER_ARGV, worker_env
from tests.chaos.expected import JOURNEYS, POLICIES

PARTITIONS = 6                # of every topic of a scenario (the workers' ORCH_PARTITIONS)
WORKER_READY_S = 120.0
EVENTS_IN = "orch_events_in_total{"

log = logging.getLogger("chaos")


def consumed_total(port: int) -> float | None:
    """Events the worker on ``port`` has consumed so far; None while its web server does not answer."""
    metrics = scrape_port(port)
    return None if metrics is None else total(metrics, EVENTS_IN)


ALL_WORKERS: list["ChaosWorker"] = []     # for the last-resort cleanup in main()


class ChaosWorker:
    """One ``orchestrator worker`` process of a scenario (restartable; same data dir and port)."""

    def __init__(self, name: str, folder: Path, prefix: str, bootstrap: str, guarantee: str = "at-least-once") -> None:
        self.name = name
        self.data_dir = folder / f"{name}-data"
        self.log_path = folder / f"{name}.log"
        self.port = free_port()
        self.env = worker_env(prefix=prefix, partitions=PARTITIONS, data_dir=self.data_dir, web_port=self.port,
                              journeys=JOURNEYS, policies=POLICIES, bootstrap=bootstrap,
                              extra={"ORCH_REPLICATION": "3", "ORCH_PROCESSING_GUARANTEE": guarantee})
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.wanted = False          # started by the suite and not (yet) stopped or killed by it
        ALL_WORKERS.append(self)

    def spawn(self) -> None:
        self.starts += 1
        self.wanted = True
        with open(self.log_path, "ab") as out:
            out.write(f"\n===== chaos: start #{self.starts} of {self.name} at {time.strftime('%H:%M:%S')}\n".encode())
            self.proc = subprocess.Popen(list(WORKER_ARGV), env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, deadline: float) -> None:
        while consumed_total(self.port) is None:
            if not self.alive():
                raise RuntimeError(f"worker {self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} not ready in time; see {self.log_path}")
            time.sleep(0.2)

    def start(self, wait_s: float = WORKER_READY_S) -> "ChaosWorker":
        self.spawn()
        self.wait_ready(time.monotonic() + wait_s)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def consumed(self) -> float:
        return consumed_total(self.port) or 0.0

    def wait_active(self, wait_s: float = 60.0) -> bool:
        """Until this process has taken input (it holds partitions and processes); False if not."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.consumed() > 0:
                return True
            if not self.alive():
                return False
            time.sleep(0.2)
        return False

    def crashed(self) -> bool:
        """Exited while the suite wanted it running."""
        return self.wanted and self.proc is not None and self.proc.poll() is not None

    def kill(self) -> None:
        self.wanted = False
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 60.0) -> bool:
        """SIGTERM and wait; SIGKILL after ``timeout_s``. True if it stopped by itself."""
        self.wanted = False
        if not self.alive():
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            log.warning("worker %s ignored SIGTERM for %.0f s; killing it", self.name, timeout_s)
            self.kill()
            return False

    def wipe(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
