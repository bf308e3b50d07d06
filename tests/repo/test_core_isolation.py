"""The pure core and the simulator must not import Kafka, Faust or RocksDB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("faust", "aiokafka", "rocksdict", "kafka", "mode", "uvloop")

PROBE = """
import json, sys
import orchestrator.core
import orchestrator.core.engine, orchestrator.core.events, orchestrator.core.expressions
import orchestrator.core.journeys, orchestrator.core.journeyfiles, orchestrator.core.policies, orchestrator.core.state
import orchestrator.simulate
heavy = %r
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_core_and_simulate_import_no_kafka_faust_or_rocksdb() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE % (HEAVY,)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"the pure core pulled in: {loaded}"


def test_the_probe_would_notice_a_heavy_import() -> None:
    # guard against a probe that can never fail: importing json shows up when asked for
    proc = subprocess.run([sys.executable, "-c", PROBE % (("json",),)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "json" in json.loads(proc.stdout.strip().splitlines()[-1])
