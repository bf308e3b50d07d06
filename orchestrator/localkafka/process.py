"""The broker's JVM as a process: pid file, lock, storage format, start, signals, exit."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from orchestrator.errors import LocalKafkaError
from orchestrator.localkafka.config import BrokerFiles, new_cluster_id

POLL_S = 0.1  # polling interval of every wait loop (kept well under 0.2 s)


def read_pid(files: BrokerFiles) -> int | None:
    """The pid recorded in the pid file, or ``None``."""
    try:
        return int(files.pid.read_text().strip())
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is an exited child of this process (so it is not a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def command_line(pid: int) -> str | None:
    """The command line of a live process, or ``None`` if there is no such (non-zombie) process."""
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return _command_line_from_ps(pid)
    try:
        if ") Z" in (proc / "stat").read_text():  # zombie: exited, not yet collected
            return None
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def _command_line_from_ps(pid: int) -> str | None:
    """:func:`command_line` for systems without ``/proc`` (macOS)."""
    try:
        done = subprocess.run(
            ["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    state, _, command = done.stdout.strip().partition(" ")
    return command.strip() if state and not state.startswith("Z") else None


def is_our_broker(pid: int | None) -> bool:
    """Whether ``pid`` is a live java process running ``kafka.Kafka``."""
    if not pid or pid <= 0:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else; the command line decides
    command = command_line(pid)
    return bool(command) and "java" in command and "kafka.Kafka" in command


def running_pid(files: BrokerFiles) -> int | None:
    """The pid of our live broker, removing a stale pid file."""
    pid = read_pid(files)
    if is_our_broker(pid):
        return pid
    if pid is not None or files.pid.exists():
        with contextlib.suppress(OSError):
            files.pid.unlink()
    return None


def configured_port(files: BrokerFiles) -> int | None:
    """The PLAINTEXT port in the last written ``server.properties``."""
    with contextlib.suppress(OSError):
        match = re.search(r"^listeners=PLAINTEXT://[^:]+:(\d+)", files.config.read_text(), re.M)
        if match:
            return int(match.group(1))
    return None


@contextlib.contextmanager
def locked(files: BrokerFiles) -> Iterator[None]:
    """Serialize concurrent ``up()`` calls on the same ``ORCH_HOME``."""
    files.home.mkdir(parents=True, exist_ok=True)
    with open(files.lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ('' if missing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def format_storage(java: str, lib: Path, files: BrokerFiles, cluster_id: str | None = None) -> None:
    """Format the KRaft metadata/log folder once (skipped when it already holds meta.properties)."""
    if (files.data / "meta.properties").is_file():
        return
    files.data.mkdir(parents=True, exist_ok=True)
    command = [
        java, f"-Dlog4j2.configurationFile={files.log4j}", f"-Dkafka.logs.dir={files.home}",
        "-cp", str(lib / "*"), "kafka.tools.StorageTool", "format",
        "-t", cluster_id or new_cluster_id(), "-c", str(files.config), "--ignore-formatted",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise LocalKafkaError(
            f"Formatting the local Kafka storage in {files.data} failed; delete that folder and "
            f"try again (output below).\n{output}"
        )


def spawn(command: list[str], files: BrokerFiles) -> subprocess.Popen[bytes]:
    """Start the broker detached from this process (its own session), writing the pid file."""
    with open(files.out, "ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=files.home,
            start_new_session=True,
            close_fds=True,
        )
    files.pid.write_text(f"{process.pid}\n")
    return process


def signal_pid(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid``, ignoring a process that is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise LocalKafkaError(
            f"Not allowed to stop the local Kafka broker (pid {pid}); stop it as the user who started it."
        ) from None


def wait_exit(alive: Callable[[], bool], timeout_s: float) -> bool:
    """Poll until ``alive()`` is false; False if it is still alive after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while alive():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def port_is_free(port: int) -> bool:
    """Whether ``127.0.0.1:port`` can be bound right now (the same way the broker binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_ports_free(port: int) -> None:
    """Raise if the broker, controller (port+1), SCRAM (port+2) or TLS (port+3) port is taken."""
    for candidate, role in ((port, "broker"), (port + 1, "controller"), (port + 2, "SCRAM listener"),
                            (port + 3, "TLS listener")):
        if not port_is_free(candidate):
            raise LocalKafkaError(
                f"Port {candidate} (local Kafka {role} port) is already in use by another program; "
                "stop it, set ORCH_LOCAL_KAFKA_PORT to another port, or set ORCH_BOOTSTRAP "
                "to use an existing cluster."
            )
