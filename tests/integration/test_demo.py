"""`make run` on a terminal with ORCH_PARTITIONS=4: the demo runs, and Ctrl-C is a clean stop (exit 0)."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import shutil
import time
import uuid

import pytest

from tests.integration.harness import BOOTSTRAP, free_port, scrape
from tests.integration.test_topics import HERE, ROOT, describe

TIMEOUT_S = 240.0


def test_make_run_with_4_partitions_runs_and_ctrl_c_exits_0(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = {**os.environ, "ORCH_BOOTSTRAP": BOOTSTRAP, "ORCH_TOPIC_PREFIX": prefix, "ORCH_PARTITIONS": "4",
           "ORCH_WEB_PORT": str(port), "ORCH_DATA_DIR": str(tmp_path / "data"), "ORCH_HOME": str(tmp_path / "home"),
           "ORCH_JOURNEYS": str(HERE / "journeys"), "ORCH_POLICIES": str(HERE / "policies.yaml")}
    pid, fd = pty.fork()              # make leads a new session on a terminal, as in a shell
    if pid == 0:
        try:
            os.chdir(ROOT)
            os.execvpe("make", ["make", "--no-print-directory", "run", "DEMO_ARGS=--rate 50"], env)
        finally:
            os._exit(127)
    out = b""
    interrupted = False
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:            # the terminal closed: everything exited
                    break
                if not chunk:
                    break
                out += chunk
            # Ctrl-C once the worker has decided demo traffic (its progress line counts actions).
            if not interrupted and b"actions out" in out and b"none yet" not in out.rsplit(b"events in", 1)[-1]:
                os.write(fd, b"\x03")
                interrupted = True
            assert time.monotonic() < deadline, out.decode(errors="replace")[-3000:]
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert interrupted, text[-3000:]
    assert os.waitstatus_to_exitcode(status) == 0, text[-3000:]
    assert "Error" not in text and "Interrupt" not in text and "Traceback" not in text, text[-3000:]
    assert "stopping the worker" in text
    assert scrape(port) is None                            # the worker is gone too
    topics = asyncio.run(describe(prefix))
    assert topics and all(partitions == 4 for partitions, _ in topics.values()), topics
