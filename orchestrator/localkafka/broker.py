"""The local broker's lifecycle: :func:`up`, :func:`down`, :func:`status`."""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import Any

from orchestrator.config import external_bootstrap
from orchestrator.errors import LocalKafkaError
from orchestrator.localkafka import config, process
from orchestrator.localkafka.config import BrokerFiles, bootstrap_for, home_dir, requested_port
from orchestrator.localkafka.install import ensure_jars, require_java
from orchestrator.localkafka.ready import probe, quiet_aiokafka, run_async, wait_ready
from orchestrator.localkafka.security import create_scram_user, ensure_tls

log = logging.getLogger("orchestrator.localkafka")


def up(*, port: int | None = None, wait_s: float = 90) -> str:
    """Start the local broker (or reuse the running one) and return its bootstrap string.

    With ``ORCH_BOOTSTRAP`` set, nothing is started and that value is returned. Blocks until
    the broker answers a metadata request, at most ``wait_s`` seconds.
    """
    external = external_bootstrap()
    if external:
        return external
    port = requested_port(port)
    files = BrokerFiles(home_dir())
    with process.locked(files):
        pid = process.running_pid(files)
        if pid is not None:
            return _reuse(pid, port, files, wait_s)
        java = require_java()
        process.check_ports_free(port)
        lib = ensure_jars()
        files.data.mkdir(parents=True, exist_ok=True)
        keystore = ensure_tls(java, files)
        files.config.write_text(config.server_properties(port, files.data, keystore))
        files.log4j.write_text(config.log4j2_properties(files.log))
        process.format_storage(java, lib, files)
        proc = process.spawn(config.java_command(java, lib, files), files)
        log.info("Started the local Kafka broker (pid %d); waiting for it to answer...", proc.pid)
        bootstrap = bootstrap_for(port)
        try:
            wait_ready(bootstrap, wait_s=wait_s, alive=lambda: proc.poll() is None, files=files)
        except LocalKafkaError:
            if proc.poll() is not None:  # it died: do not leave a stale pid file behind
                with contextlib.suppress(OSError):
                    files.pid.unlink()
            raise
        create_scram_user(java, lib, bootstrap)
        return bootstrap


def _reuse(pid: int, port: int, files: BrokerFiles, wait_s: float) -> str:
    """Wait for the already running broker and return its bootstrap string."""
    running_port = process.configured_port(files) or port
    if running_port != port:
        raise LocalKafkaError(
            f"The local Kafka broker is already running on port {running_port}, not {port}; "
            "run `orchestrator kafka down` first to change its port."
        )
    bootstrap = bootstrap_for(running_port)
    wait_ready(bootstrap, wait_s=wait_s, alive=lambda: process.is_our_broker(pid), files=files)
    return bootstrap


def down(*, timeout_s: float = 30) -> bool:
    """Stop the local broker (SIGTERM, then SIGKILL after ``timeout_s``); True if one was stopped.

    Does nothing (returns False) when ``ORCH_BOOTSTRAP`` is set or no broker runs.
    """
    if external_bootstrap():
        return False
    files = BrokerFiles(home_dir())
    pid = process.running_pid(files)
    if pid is None:
        return False
    log.info("Stopping the local Kafka broker (pid %d)...", pid)
    process.signal_pid(pid, signal.SIGTERM)
    if not process.wait_exit(lambda: process.is_our_broker(pid), timeout_s):
        log.warning("The local Kafka broker did not stop within %g s; killing it.", timeout_s)
        process.signal_pid(pid, signal.SIGKILL)
        if not process.wait_exit(lambda: process.is_our_broker(pid), 10):
            raise LocalKafkaError(
                f"The local Kafka broker (pid {pid}) survived SIGKILL; stop it by hand (kill -9 {pid})."
            )
    with contextlib.suppress(OSError):
        files.pid.unlink()
    return True


def status() -> dict[str, Any]:
    """The local broker's state: running, pid, bootstrap, data_dir, log_file (and a few more). With
    ``ORCH_BOOTSTRAP`` set no local broker is meant, and ``orch_bootstrap_answers`` says whether that
    cluster answers a metadata request (with the ``ORCH_KAFKA_*`` connection settings)."""
    files = BrokerFiles(home_dir())
    pid = process.running_pid(files)
    port = (process.configured_port(files) if pid else None) or requested_port()
    info: dict[str, Any] = {
        "running": pid is not None,
        "pid": pid,
        "bootstrap": bootstrap_for(port),
        "data_dir": str(files.data),
        "log_file": str(files.log),
        "home": str(files.home),
        "orch_bootstrap": external_bootstrap(),
    }
    if info["orch_bootstrap"]:
        from orchestrator.config import Settings
        connection = Settings.from_env().aiokafka_kwargs()
        bootstrap = ",".join(connection.pop("bootstrap_servers"))
        with quiet_aiokafka():
            info["orch_bootstrap_answers"] = run_async(lambda: probe(bootstrap, **connection))
    return info


def is_up(info: dict[str, Any]) -> bool:
    """Whether the broker a :func:`status` is about is up (``orchestrator kafka status`` exits 1 if
    not): the cluster of ``ORCH_BOOTSTRAP`` when it is set, else the local broker."""
    return bool(info["orch_bootstrap_answers"] if info["orch_bootstrap"] else info["running"])
