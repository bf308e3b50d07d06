"""A local single-node Apache Kafka broker (KRaft, no ZooKeeper) for development and tests.

Used by ``make kafka-up`` / ``make kafka-down`` and ``orchestrator kafka up|down|status``;
also runnable as ``python -m orchestrator.kafka_local up|down|status``.

How it works:

- The broker's jars come from Maven Central through ``deploy/kafka/pom.xml`` (``mvn
  dependency:copy-dependencies``) and are cached in
  ``${ORCH_CACHE_DIR:-~/.cache/orchestrator}/kafka-<version>/lib``. They are fetched into a
  temporary folder that is renamed into place, so an interrupted fetch leaves no half cache.
- Config, data, pid file and logs live in ``${ORCH_HOME:-.orch}/kafka/`` (relative to the
  current directory)::

      server.properties   log4j2.properties   broker.pid
      broker.out (JVM stdout/stderr)   broker.log (log4j2, INFO)   data/ (log.dirs)

- The broker listens on ``127.0.0.1:${ORCH_LOCAL_KAFKA_PORT:-9092}`` (controller on port+1,
  SASL/SCRAM on port+2, TLS on port+3)
  and advertises ``localhost:<port>``.
- If ``ORCH_BOOTSTRAP`` is set, an existing cluster is meant: :func:`up` starts nothing and
  returns that value, :func:`down` does nothing.

Every error meant for the user is a :class:`LocalKafkaError` whose message says what to do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError

__all__ = ["LocalKafkaError", "up", "down", "status", "external_bootstrap", "main"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 9092
MIN_JAVA = 17
POLL_S = 0.1  # polling interval of every wait loop (kept well under 0.2 s)
PROBE_TIMEOUT_MS = 2000  # per-attempt request timeout of the readiness probe
JVM_OPTS = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true")
NODE_ID = 1


class LocalKafkaError(OrchestratorError):
    """The local broker cannot be fetched, started or stopped; ``str(e)`` says what to do."""


# --------------------------------------------------------------------------- paths & settings


def repo_root() -> Path:
    """The repository (or installed tree) holding ``deploy/kafka/pom.xml``."""
    return Path(__file__).resolve().parents[1]


def pom_path() -> Path:
    """The Maven project that lists the broker's jars."""
    return repo_root() / "deploy" / "kafka" / "pom.xml"


def kafka_version(pom: Path | None = None) -> str:
    """The ``<kafka.version>`` property of the pom (e.g. ``"4.1.1"``)."""
    pom = pom or pom_path()
    try:
        root = ET.parse(pom).getroot()
    except (OSError, ET.ParseError) as e:
        raise LocalKafkaError(
            f"Cannot read the Kafka version from {pom} ({e}); restore that file from git."
        ) from None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "kafka.version" and (element.text or "").strip():
            return element.text.strip()
    raise LocalKafkaError(f"{pom} has no <kafka.version> property; restore that file from git.")


def cache_dir() -> Path:
    """Where downloaded jars are kept across checkouts: ``$ORCH_CACHE_DIR`` or ``~/.cache/orchestrator``."""
    configured = os.environ.get("ORCH_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "orchestrator"


def lib_dir(version: str) -> Path:
    """The broker's classpath folder for ``version``."""
    return cache_dir() / f"kafka-{version}" / "lib"


def home_dir() -> Path:
    """``$ORCH_HOME/kafka`` (``ORCH_HOME`` defaults to ``.orch`` in the current directory), absolute."""
    return (Path(os.environ.get("ORCH_HOME") or ".orch") / "kafka").absolute()


class _Files:
    """The files of the local broker under :func:`home_dir`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.data = home / "data"
        self.config = home / "server.properties"
        self.log4j = home / "log4j2.properties"
        self.pid = home / "broker.pid"
        self.out = home / "broker.out"
        self.log = home / "broker.log"
        self.lock = home / "up.lock"
        self.tls = home / "tls"
        self.keystore = self.tls / "broker.p12"
        self.ca = self.tls / "ca.pem"


def requested_port(port: int | None = None) -> int:
    """``port`` if given, else ``$ORCH_LOCAL_KAFKA_PORT``, else 9092."""
    if port is None:
        raw = os.environ.get("ORCH_LOCAL_KAFKA_PORT", "").strip()
        if not raw:
            return DEFAULT_PORT
        try:
            port = int(raw)
        except ValueError:
            raise LocalKafkaError(
                f"ORCH_LOCAL_KAFKA_PORT={raw!r} is not a port number; set it to a free port such as 9092."
            ) from None
    if not 1 <= port <= 65532:  # the controller needs port + 1, SCRAM port + 2, TLS port + 3
        raise LocalKafkaError(f"Port {port} is out of range; choose a port between 1 and 65532.")
    return port


def bootstrap_for(port: int) -> str:
    """The bootstrap string clients use for a local broker on ``port``."""
    return f"localhost:{port}"


def external_bootstrap() -> str | None:
    """``$ORCH_BOOTSTRAP`` when an existing cluster should be used instead of a local broker."""
    return os.environ.get("ORCH_BOOTSTRAP", "").strip() or None


# --------------------------------------------------------------------------- generated files


def _prop(value: object) -> str:
    """Escape a value for a Java ``.properties`` file."""
    return str(value).replace("\\", "\\\\")


def server_properties(port: int, data_dir: Path, keystore: Path | None = None) -> str:
    """The broker's ``server.properties`` for a dev/test node on ``port``.

    Controller on port+1; a SASL_PLAINTEXT listener with SCRAM-SHA-256/512 on port+2 (the
    dev user :data:`SCRAM_USER` is created at start) so clients can test authentication; with a
    ``keystore``, an SSL listener on port+3 (a self-signed certificate for localhost, see
    :func:`ensure_tls`) so clients can test TLS.
    """
    controller_port = port + 1
    scram_port = port + 2
    tls_port = port + 3
    scram_jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    settings = {
        "node.id": NODE_ID,
        "process.roles": "broker,controller",
        "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "listeners": (f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},"
                      f"SASL_PLAINTEXT://127.0.0.1:{scram_port}"),
        "advertised.listeners": f"PLAINTEXT://localhost:{port},SASL_PLAINTEXT://localhost:{scram_port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": scram_jaas,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram_jaas,
        "log.dirs": data_dir,
        **({} if keystore is None else {
            "ssl.keystore.location": keystore,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.password": TLS_STORE_PASSWORD,
            "ssl.key.password": TLS_STORE_PASSWORD,
        }),
        "num.partitions": 8,
        "offsets.topic.replication.factor": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        # As on production clusters: a topic exists only if someone created it on purpose (the
        # worker, `journeys publish`, `produce`), never as a side effect of a metadata request.
        "auto.create.topics.enable": "false",
        "message.max.bytes": 2097152,
        "replica.fetch.max.bytes": 2097152,
    }
    if keystore is not None:
        settings["listeners"] += f",SSL://127.0.0.1:{tls_port}"
        settings["advertised.listeners"] += f",SSL://localhost:{tls_port}"
        settings["listener.security.protocol.map"] += ",SSL:SSL"
    lines = ["# Generated by orchestrator.kafka_local on every start; edits are overwritten."]
    lines += [f"{key}={_prop(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def log4j2_properties(log_file: Path) -> str:
    """A log4j2 config that writes INFO and above to ``log_file`` (rolled at 100 MB, 3 kept)."""
    return "\n".join(
        [
            "# Generated by orchestrator.kafka_local on every start.",
            "status = warn",
            # Keep logging until the JVM exits, so Kafka's own shutdown hook is logged in full.
            "shutdownHook = disable",
            "appender.file.type = RollingFile",
            "appender.file.name = file",
            f"appender.file.fileName = {_prop(log_file)}",
            f"appender.file.filePattern = {_prop(log_file)}.%i",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "appender.file.policies.type = Policies",
            "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
            "appender.file.policies.size.size = 100MB",
            "appender.file.strategy.type = DefaultRolloverStrategy",
            "appender.file.strategy.max = 3",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = file",
            # Kafka's own defaults: per-request logging is far too chatty at INFO.
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
            "",
        ]
    )


def java_command(java: str, lib: Path, files: _Files) -> list[str]:
    """The command line that runs the broker in the foreground."""
    return [
        java,
        *JVM_OPTS,
        f"-Dlog4j2.configurationFile={files.log4j}",
        f"-Dkafka.logs.dir={files.home}",
        "-cp",
        str(lib / "*"),  # expanded by java itself, not by a shell
        "kafka.Kafka",
        str(files.config),
    ]


def new_cluster_id() -> str:
    """A random cluster id in Kafka's format (22 chars of URL-safe base64, not starting with '-')."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


# --------------------------------------------------------------------------- prerequisites


def find_java() -> str | None:
    """``$JAVA_HOME/bin/java`` if it exists, else ``java`` on ``PATH``, else ``None``."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def java_major_version(java: str) -> int | None:
    """The major version of ``java`` (8 for ``1.8.0_x``, 17 for ``17.0.15``), or ``None``."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def require_java() -> str:
    """The java executable to run the broker with; raises if it is missing or older than 17."""
    java = find_java()
    version = java_major_version(java) if java else None
    if version is None or version < MIN_JAVA:
        raise LocalKafkaError(
            f"Java {MIN_JAVA} or newer is needed to run the local Kafka broker; install it "
            "(e.g. apt-get install openjdk-17-jre-headless) or set ORCH_BOOTSTRAP to use an existing cluster."
        )
    return java


def require_mvn() -> str:
    """The ``mvn`` executable used to fetch the broker's jars; raises if it is missing."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise LocalKafkaError(
            "Maven (mvn) is needed once to download the local Kafka broker; install it "
            "(e.g. apt-get install maven) or set ORCH_BOOTSTRAP to use an existing cluster."
        )
    return mvn


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


# --------------------------------------------------------------------------- fetching jars


def jars_complete(lib: Path, version: str) -> bool:
    """Whether ``lib`` holds the broker jar and the slf4j-to-log4j2 binding the pom adds."""
    return (lib / f"kafka_2.13-{version}.jar").is_file() and any(lib.glob("log4j-slf4j-impl-*.jar"))


def ensure_jars(version: str | None = None) -> Path:
    """The broker's classpath folder, fetched from Maven Central when missing or incomplete."""
    version = version or kafka_version()
    lib = lib_dir(version)
    if jars_complete(lib, version):
        return lib
    mvn = require_mvn()
    lib.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".lib-fetching-", dir=lib.parent))
    try:
        log.info("Fetching Kafka %s from Maven Central into %s (first run only)...", version, lib)
        _run_maven(mvn, staging / "lib", version)
        if lib.exists() and not jars_complete(lib, version):  # left by an older pom
            lib.rename(staging / "old-lib")
        with contextlib.suppress(OSError):  # a concurrent fetch may have won the rename
            (staging / "lib").rename(lib)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_abandoned_fetches(lib.parent)
    if not jars_complete(lib, version):
        raise LocalKafkaError(
            f"Maven finished but {lib} lacks kafka_2.13-{version}.jar or log4j-slf4j-impl; "
            f"check {pom_path()} and try again."
        )
    return lib


def _remove_abandoned_fetches(version_dir: Path, older_than_s: float = 3600) -> None:
    """Delete staging folders left by fetches that were killed (e.g. SIGKILL) long ago."""
    cutoff = time.time() - older_than_s
    for staging in version_dir.glob(".lib-fetching-*"):
        with contextlib.suppress(OSError):
            if staging.stat().st_mtime < cutoff:
                shutil.rmtree(staging, ignore_errors=True)


def _run_maven(mvn: str, out_dir: Path, version: str) -> None:
    """Copy the pom's runtime dependencies into ``out_dir``."""
    command = [
        mvn, "-B", "-q", "-f", str(pom_path()), "dependency:copy-dependencies",
        f"-DoutputDirectory={out_dir}", "-DincludeScope=runtime",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).splitlines()
        errors = [line for line in output if "ERROR" in line] or output or ["no output"]
        raise LocalKafkaError(
            f"Downloading Kafka {version} with Maven failed ({errors[0].strip()[:300]}); check "
            "network access to Maven Central (or ~/.m2/settings.xml) and try again, or set "
            "ORCH_BOOTSTRAP to use an existing cluster."
        )


# --------------------------------------------------------------------------- processes


def _read_pid(files: _Files) -> int | None:
    """The pid recorded in the pid file, or ``None``."""
    try:
        return int(files.pid.read_text().strip())
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is an exited child of this process (so it is not a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _command_line(pid: int) -> str | None:
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
    """:func:`_command_line` for systems without ``/proc`` (macOS)."""
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
    command = _command_line(pid)
    return bool(command) and "java" in command and "kafka.Kafka" in command


def _running_pid(files: _Files) -> int | None:
    """The pid of our live broker, removing a stale pid file."""
    pid = _read_pid(files)
    if is_our_broker(pid):
        return pid
    if pid is not None or files.pid.exists():
        with contextlib.suppress(OSError):
            files.pid.unlink()
    return None


def _configured_port(files: _Files) -> int | None:
    """The PLAINTEXT port in the last written ``server.properties``."""
    with contextlib.suppress(OSError):
        match = re.search(r"^listeners=PLAINTEXT://[^:]+:(\d+)", files.config.read_text(), re.M)
        if match:
            return int(match.group(1))
    return None


@contextlib.contextmanager
def _locked(files: _Files) -> Iterator[None]:
    """Serialize concurrent ``up()`` calls on the same ``ORCH_HOME``."""
    files.home.mkdir(parents=True, exist_ok=True)
    with open(files.lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ('' if missing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _format_storage(java: str, lib: Path, files: _Files) -> None:
    """Format the KRaft metadata/log folder once (skipped when it already holds meta.properties)."""
    if (files.data / "meta.properties").is_file():
        return
    files.data.mkdir(parents=True, exist_ok=True)
    command = [
        java, f"-Dlog4j2.configurationFile={files.log4j}", f"-Dkafka.logs.dir={files.home}",
        "-cp", str(lib / "*"), "kafka.tools.StorageTool", "format",
        "-t", new_cluster_id(), "-c", str(files.config), "--ignore-formatted",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise LocalKafkaError(
            f"Formatting the local Kafka storage in {files.data} failed; delete that folder and "
            f"try again (output below).\n{output}"
        )


def _spawn(java: str, lib: Path, files: _Files) -> subprocess.Popen[bytes]:
    """Start the broker detached from this process, writing the pid file."""
    with open(files.out, "wb") as out:
        process = subprocess.Popen(
            java_command(java, lib, files),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=files.home,
            start_new_session=True,
            close_fds=True,
        )
    files.pid.write_text(f"{process.pid}\n")
    return process


# --------------------------------------------------------------------------- readiness


async def _probe(bootstrap: str) -> bool:
    """Whether the broker at ``bootstrap`` answers a metadata request listing a broker."""
    try:
        from aiokafka import AIOKafkaClient
    except ImportError:
        raise LocalKafkaError(
            "aiokafka is needed to check the local Kafka broker; install the orchestrator "
            "package (pip install -e .) and try again."
        ) from None
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        client_id="orchestrator-kafka-local",
        request_timeout_ms=PROBE_TIMEOUT_MS,
    )
    try:
        await client.bootstrap()
        return bool(client.cluster.brokers())
    except LocalKafkaError:
        raise
    except Exception:  # not up yet: refused connection, timeout, no metadata, ...
        return False
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def _run_async(make_coro: Callable[[], Any]) -> Any:
    """Run a coroutine to completion, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(make_coro())
        except BaseException as e:  # re-raised in the caller's thread
            result["error"] = e

    thread = threading.Thread(target=target, name="kafka-local-wait")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    """Silence aiokafka's 'Unable connect' errors while the broker is still starting."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def wait_ready(
    bootstrap: str,
    *,
    wait_s: float,
    alive: Callable[[], bool],
    files: _Files,
) -> None:
    """Poll ``bootstrap`` until it answers; raise if ``alive()`` turns false or ``wait_s`` passes."""

    async def loop() -> None:
        deadline = time.monotonic() + wait_s
        while True:
            if await _probe(bootstrap):
                return
            if not alive():
                raise _died_error(files)
            if time.monotonic() >= deadline:
                raise LocalKafkaError(
                    f"The local Kafka broker did not answer on {bootstrap} within {wait_s:g} s; "
                    f"see {files.log} (it is left running: `orchestrator kafka down` stops it)."
                )
            await asyncio.sleep(POLL_S)

    with _quiet_aiokafka():
        _run_async(loop)


def _died_error(files: _Files) -> LocalKafkaError:
    """The error for a broker that exited while starting, quoting its last output lines."""
    quoted, source = _tail(files.out), files.out
    if not quoted.strip():
        quoted, source = _tail(files.log), files.log
    return LocalKafkaError(
        f"The local Kafka broker exited while starting; see {files.log} "
        f"(last lines of {source} below).\n{quoted}"
    )


# --------------------------------------------------------------------------- public API


def up(*, port: int | None = None, wait_s: float = 90) -> str:
    """Start the local broker (or reuse the running one) and return its bootstrap string.

    With ``ORCH_BOOTSTRAP`` set, nothing is started and that value is returned. Blocks until
    the broker answers a metadata request, at most ``wait_s`` seconds.
    """
    external = external_bootstrap()
    if external:
        return external
    port = requested_port(port)
    files = _Files(home_dir())
    with _locked(files):
        pid = _running_pid(files)
        if pid is not None:
            return _reuse(pid, port, files, wait_s)
        java = require_java()
        check_ports_free(port)
        lib = ensure_jars()
        files.data.mkdir(parents=True, exist_ok=True)
        keystore = ensure_tls(java, files)
        files.config.write_text(server_properties(port, files.data, keystore))
        files.log4j.write_text(log4j2_properties(files.log))
        _format_storage(java, lib, files)
        process = _spawn(java, lib, files)
        log.info("Started the local Kafka broker (pid %d); waiting for it to answer...", process.pid)
        bootstrap = bootstrap_for(port)
        try:
            wait_ready(bootstrap, wait_s=wait_s, alive=lambda: process.poll() is None, files=files)
        except LocalKafkaError:
            if process.poll() is not None:  # it died: do not leave a stale pid file behind
                with contextlib.suppress(OSError):
                    files.pid.unlink()
            raise
        create_scram_user(java, lib, bootstrap)
        return bootstrap


TLS_STORE_PASSWORD = "orch-dev-tls"     # protects a throwaway dev key on loopback only


def ensure_tls(java: str, files: _Files) -> Path | None:
    """A self-signed certificate for ``localhost``/``127.0.0.1`` for the TLS listener (made once).

    The broker's key and certificate go to ``tls/broker.p12``; the certificate alone, as PEM, to
    ``tls/ca.pem``, which clients trust through ``ORCH_KAFKA_SSL_CAFILE``. Without a ``keytool``
    next to ``java`` the broker starts without the TLS listener (``None``).
    """
    if files.keystore.exists() and files.ca.exists():
        return files.keystore
    keytool = Path(java).resolve().parent / "keytool"
    if not keytool.exists():
        log.warning("no keytool next to %s: the local broker starts without its TLS listener", java)
        return None
    files.tls.mkdir(parents=True, exist_ok=True)
    for stale in (files.keystore, files.ca):
        with contextlib.suppress(OSError):
            stale.unlink()
    store = ["-keystore", str(files.keystore), "-storetype", "PKCS12", "-storepass", TLS_STORE_PASSWORD]
    for cmd in ([str(keytool), "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
                 "-validity", "3650", "-dname", "CN=localhost", "-ext", "SAN=dns:localhost,ip:127.0.0.1",
                 "-keypass", TLS_STORE_PASSWORD, *store],
                [str(keytool), "-exportcert", "-alias", "broker", "-rfc", "-file", str(files.ca), *store]):
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-2:]
            raise LocalKafkaError("Could not create the local broker's TLS certificate: " + " | ".join(tail))
    return files.keystore


def tls_ca_file() -> Path:
    """The CA bundle (the self-signed certificate) that trusts the local broker's TLS listener."""
    return _Files(home_dir()).ca


SCRAM_USER = "orch"
SCRAM_PASSWORD = "orch-dev-secret"      # a dev broker on loopback only; documented in the README


def create_scram_user(java: str, lib: Path, bootstrap: str) -> None:
    """Create (or refresh) the dev SCRAM user on the SASL listener (idempotent)."""
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):   # one mechanism per request
        config = f"{mechanism}=[password={SCRAM_PASSWORD}]"
        cmd = [java, "-Xmx256m", "-cp", str(lib / "*"), "kafka.admin.ConfigCommand", "--bootstrap-server",
               bootstrap, "--alter", "--add-config", config, "--entity-type", "users", "--entity-name", SCRAM_USER]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise LocalKafkaError("Could not create the dev SCRAM user on the local broker; see: " + " | ".join(tail))


def _reuse(pid: int, port: int, files: _Files, wait_s: float) -> str:
    """Wait for the already running broker and return its bootstrap string."""
    running_port = _configured_port(files) or port
    if running_port != port:
        raise LocalKafkaError(
            f"The local Kafka broker is already running on port {running_port}, not {port}; "
            "run `orchestrator kafka down` first to change its port."
        )
    bootstrap = bootstrap_for(running_port)
    wait_ready(bootstrap, wait_s=wait_s, alive=lambda: is_our_broker(pid), files=files)
    return bootstrap


def down(*, timeout_s: float = 30) -> bool:
    """Stop the local broker (SIGTERM, then SIGKILL after ``timeout_s``); True if one was stopped.

    Does nothing (returns False) when ``ORCH_BOOTSTRAP`` is set or no broker runs.
    """
    if external_bootstrap():
        return False
    files = _Files(home_dir())
    pid = _running_pid(files)
    if pid is None:
        return False
    log.info("Stopping the local Kafka broker (pid %d)...", pid)
    _signal(pid, signal.SIGTERM)
    if not _wait_exit(pid, timeout_s):
        log.warning("The local Kafka broker did not stop within %g s; killing it.", timeout_s)
        _signal(pid, signal.SIGKILL)
        if not _wait_exit(pid, 10):
            raise LocalKafkaError(
                f"The local Kafka broker (pid {pid}) survived SIGKILL; stop it by hand (kill -9 {pid})."
            )
    with contextlib.suppress(OSError):
        files.pid.unlink()
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid``, ignoring a process that is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise LocalKafkaError(
            f"Not allowed to stop the local Kafka broker (pid {pid}); stop it as the user who started it."
        ) from None


def _wait_exit(pid: int, timeout_s: float) -> bool:
    """Poll until ``pid`` has exited; False if it is still alive after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while is_our_broker(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def status() -> dict[str, Any]:
    """The local broker's state: running, pid, bootstrap, data_dir, log_file (and a few more)."""
    files = _Files(home_dir())
    pid = _running_pid(files)
    port = (_configured_port(files) if pid else None) or requested_port()
    return {
        "running": pid is not None,
        "pid": pid,
        "bootstrap": bootstrap_for(port),
        "data_dir": str(files.data),
        "log_file": str(files.log),
        "home": str(files.home),
        "orch_bootstrap": external_bootstrap(),
    }


# --------------------------------------------------------------------------- command line

USAGE = "usage: python -m orchestrator.kafka_local up|down|status"


def main(argv: list[str] | None = None) -> int:
    """``up`` / ``down`` / ``status`` (JSON) for the local broker; returns the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1 or args[0] not in ("up", "down", "status"):
        print(USAGE, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    command = args[0]
    try:
        if command == "status":
            print(json.dumps(status(), indent=2))
            return 0
        external = external_bootstrap()
        if external:
            verb = "starting" if command == "up" else "stopping"
            print(f"ORCH_BOOTSTRAP is set ({external}); not {verb} a local broker")
            return 0
        if command == "up":
            bootstrap = up()
            info = status()
            print(f"Local Kafka broker ready at {bootstrap} (pid {info['pid']}; log {info['log_file']})")
        elif down():
            print("Stopped the local Kafka broker.")
        else:
            print("The local Kafka broker is not running.")
        return 0
    except LocalKafkaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
