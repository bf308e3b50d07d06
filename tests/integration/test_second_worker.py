"""A second worker on a data folder or a web port that a running worker has is refused in one
sentence, exit 1, before it joins the consumer group: the running worker keeps every partition."""

from __future__ import annotations

import subprocess
import time
import urllib.request

import orjson
import pytest

from tests.integration.harness import WORKER_ARGV, WorkerProcess, free_port

PARTITIONS = 4
REFUSAL_TIMEOUT_S = 60.0


def health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            return orjson.loads(resp.read())
    except OSError:
        return None


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    w = WorkerProcess(tmp_path_factory.mktemp("first"), partitions=PARTITIONS).start()
    deadline = time.monotonic() + 60
    while (health(w.port) or {}).get("partitions") != list(range(PARTITIONS)):
        assert time.monotonic() < deadline and w.exit_code() is None, w.log_tail()
        time.sleep(0.2)
    yield w
    w.stop()


def second(first: WorkerProcess, **env: str) -> subprocess.CompletedProcess[str]:
    """Another worker of the same group with ``env`` changed; it must end by itself."""
    try:
        return subprocess.run(list(WORKER_ARGV), env={**first.env, **env}, capture_output=True, text=True,
                              timeout=REFUSAL_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the second worker is still running after {REFUSAL_TIMEOUT_S} s:\n"
                             f"{exc.stderr.decode(errors='replace') if exc.stderr else ''}") from None


def assert_first_undisturbed(first: WorkerProcess) -> None:
    assert (health(first.port) or {}).get("partitions") == list(range(PARTITIONS)), first.log_tail()
    assert first.exit_code() is None
    assert "partitions revoked" not in first.log_path.read_text(), first.log_tail()   # no rebalance at all


def test_a_second_worker_on_the_same_data_folder_is_refused_before_joining(first):
    done = second(first, ORCH_WEB_PORT=str(free_port()))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: another worker (pid {first.pid}) uses the data folder {first.data_dir}: stop it, "
                     "or give this worker a folder of its own with ORCH_DATA_DIR"], done.stderr
    assert_first_undisturbed(first)


def test_a_second_worker_on_the_same_web_port_is_refused_before_joining(first, tmp_path):
    done = second(first, ORCH_DATA_DIR=str(tmp_path / "other-data"))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: 127.0.0.1:{first.port} is already in use by another worker (its /health answers "
                     "there): stop it, or give this worker a free port with ORCH_WEB_PORT"], done.stderr
    assert_first_undisturbed(first)
