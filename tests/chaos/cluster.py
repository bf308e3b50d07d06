"""A local 3-broker Kafka cluster (KRaft, every node broker + controller) for the fault suite.

Node ``n`` (1..3) listens on ``127.0.0.1:19090 + 2n`` (broker) and the next port (controller):
19092/19093, 19094/19095, 19096/19097. All three are controller voters, so the cluster keeps a
metadata quorum with one node down. Topics default to replication factor 3 with
``min.insync.replicas=2``: with one broker down, ``acks=all`` writes still succeed.

Jars, Java, the log4j2 config and the process handling come from :mod:`orchestrator.localkafka`
(the same Kafka the single-node dev broker runs). Everything lives under ``.orch/chaos/cluster/node-<n>/``
(``server.properties``, ``broker.log``, ``broker.out``, ``broker.pid``, ``data/``); the folder is
wiped by :meth:`Cluster.start` so every suite run begins with an empty cluster.

Used by ``tests/chaos/run.py``; also ``python -m tests.chaos.cluster up|down`` by hand.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.errors import LocalKafkaError
from orchestrator.localkafka import process
from orchestrator.localkafka.config import BrokerFiles, java_command, log4j2_properties, new_cluster_id, properties_text
from orchestrator.localkafka.install import ensure_jars, require_java
from orchestrator.localkafka.ready import PROBE_TIMEOUT_MS, probe, quiet_aiokafka, run_async

log = logging.getLogger("chaos.cluster")

NODES = (1, 2, 3)
BASE_PORT = 19090
JVM_OPTS = ("-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true")
POLL_S = 0.2


def broker_port(node: int) -> int:
    return BASE_PORT + 2 * node


def controller_port(node: int) -> int:
    return broker_port(node) + 1


BOOTSTRAP = ",".join(f"localhost:{broker_port(n)}" for n in NODES)


def default_home() -> Path:
    """``$ORCH_HOME/chaos/cluster`` (``ORCH_HOME`` defaults to ``.orch``), absolute."""
    return (Path(os.environ.get("ORCH_HOME") or ".orch") / "chaos" / "cluster").absolute()


def server_properties(node: int, data_dir: Path) -> str:
    """``server.properties`` of one node of the 3-node cluster."""
    voters = ",".join(f"{n}@127.0.0.1:{controller_port(n)}" for n in NODES)
    port, cport = broker_port(node), controller_port(node)
    settings: dict[str, Any] = {
        "node.id": node,
        "process.roles": "broker,controller",
        "controller.quorum.voters": voters,
        "controller.listener.names": "CONTROLLER",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://localhost:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": data_dir,
        "num.partitions": 6,
        "default.replication.factor": 3,
        "min.insync.replicas": 2,
        "offsets.topic.replication.factor": 3,
        "offsets.topic.num.partitions": 12,
        "transaction.state.log.replication.factor": 3,
        "transaction.state.log.min.isr": 2,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "false",   # as in production: only the product creates topics
        "message.max.bytes": 2097152,
        "replica.fetch.max.bytes": 2097152,
        # A killed broker is fenced (and its partitions' leadership moved) within ~6 s.
        "broker.heartbeat.interval.ms": 1000,
        "broker.session.timeout.ms": 6000,
        # Small machine: few threads, a small log-cleaner buffer (the default is 128 MiB).
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.replica.fetchers": 1,
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
        "log.cleaner.threads": 1,
    }
    return properties_text(settings)


class Node:
    """One broker+controller process and its files."""

    def __init__(self, node_id: int, home: Path) -> None:
        self.id = node_id
        self.files = BrokerFiles(home / f"node-{node_id}")
        self.port = broker_port(node_id)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.port}"

    def pid(self) -> int | None:
        return process.read_pid(self.files)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return process.is_our_broker(self.pid())

    def spawn(self, java: str, lib: Path) -> None:
        self.process = process.spawn(java_command(java, lib, self.files, jvm_opts=JVM_OPTS), self.files)

    def signal(self, sig: signal.Signals) -> None:
        pid = self.process.pid if self.process is not None else self.pid()
        if pid and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def wait_exit(self, timeout_s: float) -> bool:
        return process.wait_exit(self.alive, timeout_s)


class Cluster:
    """Start, stop, kill and restart the three nodes; wait until the cluster is usable."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or default_home()
        self.nodes = {n: Node(n, self.home) for n in NODES}
        self.bootstrap = BOOTSTRAP
        self._java: str | None = None
        self._lib: Path | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait_s: float = 180) -> str:
        """A fresh cluster (data wiped), all three nodes answering; returns the bootstrap string."""
        self._stop_leftovers()
        self._java = require_java()
        self._lib = ensure_jars()
        for n in NODES:
            for port in (broker_port(n), controller_port(n)):
                if not process.port_is_free(port):
                    raise LocalKafkaError(
                        f"port {port} (chaos cluster node {n}) is in use; stop what uses it "
                        f"(`python -m tests.chaos.cluster down` if it is a leftover chaos broker)")
        shutil.rmtree(self.home, ignore_errors=True)
        cluster_id = new_cluster_id()
        for node in self.nodes.values():
            f = node.files
            f.data.mkdir(parents=True, exist_ok=True)
            f.config.write_text(server_properties(node.id, f.data))
            f.log4j.write_text(log4j2_properties(f.log))
            self._format(node, cluster_id)
        for node in self.nodes.values():
            node.spawn(self._java, self._lib)
        log.info("chaos cluster: started 3 nodes under %s; waiting for them", self.home)
        self.wait_ready(wait_s)
        return self.bootstrap

    def _format(self, node: Node, cluster_id: str) -> None:
        process.format_storage(self._java, self._lib, node.files, cluster_id)

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM every node (in parallel), SIGKILL what is still alive after ``timeout_s``."""
        for node in self.nodes.values():
            node.signal(signal.SIGTERM)
        for node in self.nodes.values():
            if not node.wait_exit(timeout_s):
                log.warning("chaos node %d did not stop in %g s; killing it", node.id, timeout_s)
                node.signal(signal.SIGKILL)
                node.wait_exit(10)
            with contextlib.suppress(OSError):
                node.files.pid.unlink()

    def _stop_leftovers(self) -> None:
        """Stop brokers an interrupted earlier run left behind (only ours: pid file + command line)."""
        for node in self.nodes.values():
            pid = node.pid()
            if pid and process.is_our_broker(pid) and str(node.files.config) in (process.command_line(pid) or ""):
                log.warning("stopping chaos node %d left by an earlier run (pid %d)", node.id, pid)
                node.signal(signal.SIGKILL)
                node.wait_exit(15)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (no clean shutdown: its logs need recovery on restart)."""
        node = self.nodes[node_id]
        node.signal(signal.SIGKILL)
        if not node.wait_exit(15):
            raise LocalKafkaError(f"chaos node {node_id} survived SIGKILL")

    def restart(self, node_id: int, wait_s: float = 180) -> None:
        """Start a stopped (or killed) node again and wait until it answers and has caught up."""
        node = self.nodes[node_id]
        if node.alive():
            node.signal(signal.SIGTERM)
            node.wait_exit(30) or self.kill(node_id)
        assert self._java and self._lib, "start() first"
        node.spawn(self._java, self._lib)
        deadline = time.monotonic() + wait_s
        self._wait(lambda: self._node_answers(node), f"node {node_id} to answer", deadline, node)
        self._wait(self._all_registered, "all 3 brokers registered", deadline)
        self.wait_in_sync(max(5.0, deadline - time.monotonic()))

    def alive(self, node_id: int) -> bool:
        return self.nodes[node_id].alive()

    # ------------------------------------------------------------------ readiness
    def wait_ready(self, wait_s: float = 180) -> None:
        """Until every node answers and the metadata lists all three brokers."""
        deadline = time.monotonic() + wait_s
        for node in self.nodes.values():
            self._wait(lambda node=node: self._node_answers(node), f"node {node.id} to answer", deadline, node)
        self._wait(self._all_registered, "all 3 brokers registered", deadline)

    def wait_in_sync(self, wait_s: float = 120) -> bool:
        """Until every partition's ISR holds all its replicas; False (logged) if not within ``wait_s``."""
        deadline = time.monotonic() + wait_s
        try:
            self._wait(self._fully_replicated, "every partition fully in sync", deadline)
            return True
        except LocalKafkaError as e:
            log.warning("%s", e)
            return False

    def _wait(self, check: Any, what: str, deadline: float, node: Node | None = None) -> None:
        while True:
            with quiet_aiokafka():
                if run_async(check):
                    return
            if node is not None and not node.alive():
                raise LocalKafkaError(f"chaos node {node.id} exited while starting; see {node.files.log}\n"
                                         + (process.tail(node.files.out) or process.tail(node.files.log)))
            if time.monotonic() >= deadline:
                raise LocalKafkaError(f"timed out waiting for {what}; see {self.home}/node-*/broker.log")
            time.sleep(POLL_S)

    async def _node_answers(self, node: Node) -> bool:
        return await probe(node.bootstrap)

    async def _all_registered(self) -> bool:
        from aiokafka import AIOKafkaClient
        client = AIOKafkaClient(bootstrap_servers=self.bootstrap, request_timeout_ms=PROBE_TIMEOUT_MS)
        try:
            await client.bootstrap()
            metadata = await client.fetch_all_metadata()
            return {b.nodeId for b in metadata.brokers()} == set(NODES)
        except Exception:  # noqa: BLE001 - not ready yet
            return False
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    async def _fully_replicated(self) -> bool:
        from aiokafka.admin import AIOKafkaAdminClient
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=PROBE_TIMEOUT_MS)
        try:
            await admin.start()
            for topic in await admin.describe_topics():
                for p in topic["partitions"]:
                    if set(p["isr"]) != set(p["replicas"]):
                        return False
            return True
        except Exception:  # noqa: BLE001 - a broker still starting
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    def leader_counts(self, topic: str) -> dict[int, int]:
        """How many partitions of ``topic`` each node leads (for choosing a broker to kill)."""
        async def count() -> dict[int, int]:
            from aiokafka.admin import AIOKafkaAdminClient
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                out = {n: 0 for n in NODES}
                for t in await admin.describe_topics([topic]):
                    for p in t["partitions"]:
                        if p["leader"] in out:
                            out[p["leader"]] += 1
                return out
            finally:
                await admin.close()
        return run_async(count)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cluster = Cluster()
    if args == ["up"]:
        print(cluster.start())
        return 0
    if args == ["down"]:
        cluster._stop_leftovers()
        return 0
    print("usage: python -m tests.chaos.cluster up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
