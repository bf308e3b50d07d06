"""How the test suites, the fault suite and the benchmarks start a real worker process: one
place that builds its command line and environment (its own topic prefix, data folder and
metrics port, so several workers and runs never share state)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from orchestrator.config import default_bootstrap

WORKER_ARGV = (sys.executable, "-m", "orchestrator", "worker")


def worker_env(*, prefix: str, partitions: int, data_dir: Path, web_port: int, journeys: Path, policies: Path,
               bootstrap: str | None = None, base: Mapping[str, str] | None = None,
               extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment by default) plus the worker's ``ORCH_*`` settings."""
    return {**(os.environ if base is None else base),
            "ORCH_BOOTSTRAP": bootstrap or default_bootstrap(), "ORCH_TOPIC_PREFIX": prefix,
            "ORCH_PARTITIONS": str(partitions), "ORCH_DATA_DIR": str(data_dir), "ORCH_WEB_PORT": str(web_port),
            "ORCH_JOURNEYS": str(journeys), "ORCH_POLICIES": str(policies), **(extra or {})}
