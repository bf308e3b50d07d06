"""`make run` on a terminal: Ctrl-C at any moment (the install, the broker's start, the demo running)
stops everything it started and exits 0, and make reports no error.

make runs on a pseudo-terminal of its own (it leads a new session, as in a shell) and Ctrl-C is the
byte the terminal turns into SIGINT for its foreground process group. Every run has its own
ORCH_HOME, and the runs that start a broker start it on free ports: the shared broker at
localhost:9092 is never touched. "Nothing left running" is checked on the processes themselves: none
may remain with this run's ORCH_HOME in its environment (the launcher, pip, the demo, the worker and
the broker's JVM all inherit it), and the broker's port no longer answers.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import free_port, scrape
from tests.integration.test_first_start import free_block
from tests.integration.test_topics import HERE, ROOT

TIMEOUT_S = 240.0

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


class MakeRun:
    """``make run`` on a terminal of its own; :meth:`until` reads its output, :meth:`ctrl_c` types Ctrl-C."""

    def __init__(self, env: dict[str, str], *make_args: str) -> None:
        self.out = b""
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                # As from a shell on a terminal: Ctrl-C and Ctrl-\ at their defaults, whatever this test
                # run inherited (a suite started in the background by a script has SIGINT ignored, and
                # make, Python and pip keep an ignored SIGINT ignored).
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGQUIT, signal.SIG_DFL)
                os.chdir(ROOT)
                os.execvpe("make", ["make", "--no-print-directory", "run", *make_args], env)
            finally:
                os._exit(127)
        self.deadline = time.monotonic() + TIMEOUT_S
        self.code: int | None = None

    @property
    def text(self) -> str:
        return self.out.decode(errors="replace")

    def until(self, condition: Callable[[str], bool]) -> None:
        """Read the output until ``condition(text)`` holds (or make has ended: then fail)."""
        while not condition(self.text):
            assert self.read(), f"make ended first:\n{self.text[-3000:]}"

    def read(self) -> bool:
        """Read what is there (waits at most 0.2 s); False once the terminal is closed."""
        assert time.monotonic() < self.deadline, self.text[-3000:]
        ready, _, _ = select.select([self.fd], [], [], 0.2)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:                    # the terminal closed: everything on it exited
            return False
        self.out += chunk
        return bool(chunk)

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")

    def wait(self) -> int:
        """Read to the end; make's exit code."""
        while self.read():
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def assert_clean_stop(self) -> None:
        assert self.wait() == 0, self.text[-3000:]
        for noise in ("Error", "Interrupt", "Traceback", "***"):
            assert noise not in self.text, self.text[-3000:]


def run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A demo of its own: topic prefix, ORCH_HOME, data folder and web port (ORCH_BOOTSTRAP as given)."""
    env = {k: v for k, v in os.environ.items() if k != "ORCH_BOOTSTRAP"}
    env.update({"ORCH_TOPIC_PREFIX": f"it-{uuid.uuid4().hex[:10]}", "ORCH_PARTITIONS": "4",
                "ORCH_WEB_PORT": str(free_port()), "ORCH_DATA_DIR": str(tmp_path / "data"),
                "ORCH_HOME": str(tmp_path / "home"), "ORCH_JOURNEYS": str(HERE / "journeys"),
                "ORCH_POLICIES": str(HERE / "policies.yaml"), **extra})
    return env


def left_running(home: str) -> list[str]:
    """The command lines of the processes whose environment has ``ORCH_HOME=home``."""
    wanted = f"ORCH_HOME={home}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if wanted in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:                     # gone meanwhile, or not ours to read
            continue
    return found


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def broker_pid(home: str) -> int | None:
    try:
        return int((Path(home) / "kafka" / "broker.pid").read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return ") Z" not in stat


def test_ctrl_c_while_the_demo_starts_its_broker_stops_it_and_exits_0(tmp_path):
    port = free_block()
    env = run_env(tmp_path, ORCH_LOCAL_KAFKA_PORT=str(port))
    home = env["ORCH_HOME"]
    make = MakeRun(env, "DEMO_ARGS=--rate 50")
    make.until(lambda text: "starting the local Kafka broker" in text)
    while broker_pid(home) is None or not alive(broker_pid(home)):      # its JVM has been started
        assert make.read(), make.text[-3000:]
    pid = broker_pid(home)
    make.ctrl_c()
    make.assert_clean_stop()
    assert "starting the local Kafka broker" in make.text and "stopped after" in make.text, make.text
    assert "stopping the local Kafka broker" in make.text
    assert not alive(pid) and not answers(port)
    assert left_running(home) == []


def test_ctrl_c_while_the_demo_runs_on_its_own_broker_stops_everything_and_exits_0(tmp_path):
    port = free_block()
    env = run_env(tmp_path, ORCH_LOCAL_KAFKA_PORT=str(port))
    home = env["ORCH_HOME"]
    make = MakeRun(env, "DEMO_ARGS=--rate 50")
    make.until(lambda text: "sending demo traffic" in text and "events in" in text.rsplit("sending demo traffic")[-1])
    pid = broker_pid(home)
    assert pid is not None and alive(pid) and answers(port)
    make.ctrl_c()
    make.assert_clean_stop()
    assert "stopping the worker" in make.text and "stopping the local Kafka broker" in make.text
    assert not alive(pid) and not answers(port)
    assert scrape(int(env["ORCH_WEB_PORT"])) is None
    assert left_running(home) == []


def test_ctrl_c_during_the_install_exits_0_and_the_next_run_installs_again(tmp_path):
    venv = tmp_path / "venv"
    env = run_env(tmp_path, ORCH_BOOTSTRAP="127.0.0.1:1")      # never reached: the demo must not start
    make = MakeRun(env, f"VENV={venv}")
    make.until(lambda text: "installing orchestrator and its dependencies" in text)
    make.ctrl_c()
    make.assert_clean_stop()
    assert "stopped before the demo started" in make.text and "sending demo traffic" not in make.text
    assert not (venv / ".installed").exists()
    question = subprocess.run(["make", "-q", f"VENV={venv}", f"{venv}/.installed"], cwd=ROOT, check=False)
    assert question.returncode == 1                     # make (and `make run`) will install again
    assert left_running(env["ORCH_HOME"]) == []
