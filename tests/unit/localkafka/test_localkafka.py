"""Unit tests of orchestrator.localkafka that never start Kafka (or the JVM)."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from orchestrator.cli import main as cli_main
from orchestrator.errors import LocalKafkaError
from orchestrator.localkafka import broker, config, install, process


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ORCH_HOME / ORCH_CACHE_DIR at tmp_path and clear the other settings."""
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "orch"))
    monkeypatch.setenv("ORCH_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("ORCH_BOOTSTRAP", "ORCH_LOCAL_KAFKA_PORT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def executable(path: Path, script: str) -> Path:
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


# --------------------------------------------------------------------------- pom & paths


def test_version_is_read_from_the_repo_pom() -> None:
    assert install.pom_path().is_file()
    assert install.kafka_version() == "4.1.1"


def test_version_parsing_handles_the_maven_namespace(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><properties>'
        "<kafka.version> 9.9.9 </kafka.version></properties></project>"
    )
    assert install.kafka_version(pom) == "9.9.9"


def test_pom_without_version_is_a_clear_error(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project><properties/></project>")
    with pytest.raises(LocalKafkaError, match="no <kafka.version>"):
        install.kafka_version(pom)
    with pytest.raises(LocalKafkaError, match="Cannot read"):
        install.kafka_version(tmp_path / "missing.xml")


def test_paths_follow_the_environment(isolated_env: Path) -> None:
    assert install.lib_dir("4.1.1") == isolated_env / "cache" / "kafka-4.1.1" / "lib"
    assert config.home_dir() == isolated_env / "orch" / "kafka"


def test_orch_home_defaults_to_dot_orch_in_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORCH_HOME")
    monkeypatch.chdir(tmp_path)
    assert config.home_dir() == tmp_path / ".orch" / "kafka"


def test_port_comes_from_argument_env_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.requested_port() == 9092
    monkeypatch.setenv("ORCH_LOCAL_KAFKA_PORT", "19092")
    assert config.requested_port() == 19092
    assert config.requested_port(29092) == 29092
    monkeypatch.setenv("ORCH_LOCAL_KAFKA_PORT", "kafka")
    with pytest.raises(LocalKafkaError, match="ORCH_LOCAL_KAFKA_PORT"):
        config.requested_port()
    with pytest.raises(LocalKafkaError, match="out of range"):
        config.requested_port(65535)


# --------------------------------------------------------------------------- generated files


def test_server_properties_for_a_port(tmp_path: Path) -> None:
    props = parse_properties(config.server_properties(19092, tmp_path / "data"))
    assert props["node.id"] == "1"
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == ("PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,"
                                  "SASL_PLAINTEXT://127.0.0.1:19094")
    assert props["advertised.listeners"] == "PLAINTEXT://localhost:19092,SASL_PLAINTEXT://localhost:19094"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["num.partitions"] == "8"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert props["message.max.bytes"] == "2097152"
    assert props["replica.fetch.max.bytes"] == "2097152"
    assert not any(key.startswith(("zookeeper.", "share.")) for key in props)


def test_log4j_config_writes_info_to_the_log_file(tmp_path: Path) -> None:
    log_file = tmp_path / "broker.log"
    props = parse_properties(config.log4j2_properties(log_file))
    assert props["appender.file.fileName"] == str(log_file)
    assert props["rootLogger.level"] == "INFO"
    assert props["rootLogger.appenderRef.file.ref"] == "file"


def test_java_command_line(tmp_path: Path) -> None:
    files = config.BrokerFiles(tmp_path)
    command = config.java_command("/usr/bin/java", tmp_path / "lib", files)
    assert command[0] == "/usr/bin/java"
    assert {"-Xms256m", "-Xmx1g", "-XX:+UseG1GC"} <= set(command)
    assert f"-Dlog4j2.configurationFile={tmp_path / 'log4j2.properties'}" in command
    assert f"-Dkafka.logs.dir={tmp_path}" in command
    assert command[-4:] == ["-cp", str(tmp_path / "lib" / "*"), "kafka.Kafka", str(files.config)]


def test_cluster_id_format() -> None:
    for _ in range(50):
        cluster_id = config.new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")


# --------------------------------------------------------------------------- prerequisites


def test_port_in_use_is_reported() -> None:
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        assert not process.port_is_free(port)
        with pytest.raises(LocalKafkaError) as caught:
            process.check_ports_free(port)
    message = str(caught.value)
    assert f"Port {port} " in message
    assert "ORCH_LOCAL_KAFKA_PORT" in message and "ORCH_BOOTSTRAP" in message
    assert "\n" not in message


def test_controller_port_in_use_is_reported() -> None:
    with listening_socket() as sock:
        busy = sock.getsockname()[1]
        if not process.port_is_free(busy - 1):
            pytest.skip(f"port {busy - 1} happens to be taken")
        with pytest.raises(LocalKafkaError, match=f"Port {busy} .*controller"):
            process.check_ports_free(busy - 1)


def test_free_port_passes() -> None:
    with listening_socket() as sock:
        port = sock.getsockname()[1]
    assert process.port_is_free(port)


def test_missing_java_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert install.find_java() is None
    with pytest.raises(LocalKafkaError) as caught:
        install.require_java()
    assert str(caught.value) == (
        "Java 17 or newer is needed to run the local Kafka broker; install it "
        "(e.g. apt-get install openjdk-17-jre-headless) or set ORCH_BOOTSTRAP to use an existing cluster."
    )


@pytest.mark.parametrize(
    ("banner", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_292"', 8),
        ("no version here", None),
    ],
)
def test_java_version_parsing(tmp_path: Path, banner: str, major: int | None) -> None:
    java = executable(tmp_path / "java", f"echo '{banner}' >&2\n")
    assert install.java_major_version(str(java)) == major


def test_old_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = executable(tmp_path / "java", "echo 'java version \"11.0.2\"' >&2\n")
    monkeypatch.setattr(install, "find_java", lambda: str(java))
    with pytest.raises(LocalKafkaError, match="^Java 17 or newer"):
        install.require_java()


def test_java_home_wins_over_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "jdk" / "bin").mkdir(parents=True)
    java = executable(tmp_path / "jdk" / "bin" / "java", "exit 0\n")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    assert install.find_java() == str(java)


def test_up_without_java_starts_nothing(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install, "find_java", lambda: None)
    with pytest.raises(LocalKafkaError, match="^Java 17"):
        broker.up()
    assert not (isolated_env / "orch" / "kafka" / "broker.pid").exists()
    assert not (isolated_env / "cache").exists()


# --------------------------------------------------------------------------- fetching jars


def test_cached_jars_are_used_without_maven(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = install.lib_dir("4.1.1")
    lib.mkdir(parents=True)
    (lib / "kafka_2.13-4.1.1.jar").write_bytes(b"")
    (lib / "log4j-slf4j-impl-2.24.3.jar").write_bytes(b"")
    monkeypatch.setenv("PATH", str(isolated_env))  # no mvn
    assert install.ensure_jars("4.1.1") == lib


def test_missing_maven_is_a_clear_error(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(isolated_env))
    with pytest.raises(LocalKafkaError, match=r"^Maven \(mvn\) is needed"):
        install.ensure_jars("4.1.1")


def test_failed_fetch_leaves_no_half_cache(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = isolated_env / "bin"
    bin_dir.mkdir()
    # A fake mvn that copies one jar into -DoutputDirectory and then fails.
    executable(
        bin_dir / "mvn",
        'for a in "$@"; do case "$a" in -DoutputDirectory=*) out="${a#*=}";; esac; done\n'
        'mkdir -p "$out" && touch "$out/kafka_2.13-4.1.1.jar"\n'
        'echo "[ERROR] Could not transfer artifact: network is unreachable"\nexit 1\n',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")  # shadows the real mvn
    with pytest.raises(LocalKafkaError, match="network is unreachable"):
        install.ensure_jars("4.1.1")
    version_dir = install.lib_dir("4.1.1").parent
    assert list(version_dir.iterdir()) == []


def test_successful_fetch_is_renamed_into_place(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = isolated_env / "bin"
    bin_dir.mkdir()
    executable(
        bin_dir / "mvn",
        'for a in "$@"; do case "$a" in -DoutputDirectory=*) out="${a#*=}";; esac; done\n'
        'mkdir -p "$out" && touch "$out/kafka_2.13-4.1.1.jar" "$out/log4j-slf4j-impl-2.24.3.jar"\n',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")  # shadows the real mvn
    stale = install.lib_dir("4.1.1")
    stale.mkdir(parents=True)
    abandoned = stale.parent / ".lib-fetching-killed"  # left by a fetch killed with SIGKILL
    abandoned.mkdir()
    os.utime(abandoned, (0, 0))
    (stale / "kafka_2.13-4.1.1.jar").write_bytes(b"")  # a cache from before the pom added the binding
    lib = install.ensure_jars("4.1.1")
    assert sorted(p.name for p in lib.iterdir()) == ["kafka_2.13-4.1.1.jar", "log4j-slf4j-impl-2.24.3.jar"]
    assert [p.name for p in lib.parent.iterdir()] == ["lib"]  # no staging folder left


# --------------------------------------------------------------------------- ORCH_BOOTSTRAP & state


def test_orch_bootstrap_short_circuits(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setattr(install, "find_java", lambda: pytest.fail("must not look for java"))
    assert broker.up() == "kafka-1:9092,kafka-2:9092"
    assert broker.down() is False
    assert not (isolated_env / "orch").exists()
    assert broker.status()["orch_bootstrap"] == "kafka-1:9092,kafka-2:9092"


def test_cli_with_orch_bootstrap(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ORCH_BOOTSTRAP", "kafka:9092")
    assert cli_main(["kafka", "up"]) == 0
    assert capsys.readouterr().out.strip() == "ORCH_BOOTSTRAP is set (kafka:9092); not starting a local broker"


def test_cli_prints_errors_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(install, "find_java", lambda: None)
    assert cli_main(["kafka", "up"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Java 17 or newer") and "Traceback" not in err
    with pytest.raises(SystemExit) as usage:
        cli_main(["kafka", "restart"])
    assert usage.value.code == 2


def test_status_and_down_when_nothing_runs(isolated_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = broker.status()
    assert info["running"] is False and info["pid"] is None
    assert info["bootstrap"] == "localhost:9092"
    assert info["data_dir"] == str(isolated_env / "orch" / "kafka" / "data")
    assert info["log_file"] == str(isolated_env / "orch" / "kafka" / "broker.log")
    assert broker.down() is False
    assert cli_main(["kafka", "status"]) == 1           # down: scripts can tell (the JSON is printed still)
    assert '"running": false' in capsys.readouterr().out


def test_status_with_orch_bootstrap_tells_whether_that_cluster_answers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with listening_socket() as sock:           # accepts connections, never answers a Kafka request
        monkeypatch.setenv("ORCH_BOOTSTRAP", f"127.0.0.1:{sock.getsockname()[1]}")
        assert cli_main(["kafka", "status"]) == 1
    info = json.loads(capsys.readouterr().out)
    assert info["orch_bootstrap_answers"] is False and info["running"] is False


def test_stale_pid_file_is_ignored_and_removed(isolated_env: Path) -> None:
    home = isolated_env / "orch" / "kafka"
    home.mkdir(parents=True)
    (home / "broker.pid").write_text(f"{os.getpid()}\n")  # alive, but not a Kafka broker
    assert process.is_our_broker(os.getpid()) is False
    assert broker.down() is False
    assert not (home / "broker.pid").exists()
