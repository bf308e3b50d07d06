"""SASL/SCRAM and TLS against the local broker's SCRAM listener (port + 2, dev user created by
`kafka up`) and TLS listener (port + 3, self-signed certificate made by `kafka up`)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from orchestrator.localkafka import SCRAM_PASSWORD, SCRAM_USER
from tests.integration.harness import BOOTSTRAP, WorkerProcess, dumps, event, produce, read_all


def scram_bootstrap() -> str:
    explicit = os.environ.get("ORCH_TEST_SCRAM_BOOTSTRAP")
    if explicit:
        return explicit
    if os.environ.get("ORCH_BOOTSTRAP"):
        pytest.skip("ORCH_BOOTSTRAP points at an external cluster: set ORCH_TEST_SCRAM_BOOTSTRAP to its SCRAM "
                    "listener (and ORCH_TEST_SCRAM_USER/PASSWORD) to run this test")
    host, _, port = BOOTSTRAP.rpartition(":")
    return f"{host}:{int(port) + 2}"


def scram_env(password: str) -> dict[str, str]:
    return {"ORCH_BOOTSTRAP": scram_bootstrap(), "ORCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "ORCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "ORCH_KAFKA_SASL_USERNAME": os.environ.get("ORCH_TEST_SCRAM_USER", SCRAM_USER),
            "ORCH_KAFKA_SASL_PASSWORD": password}


async def round_trip(tmp_path, extra_env: dict[str, str]) -> WorkerProcess:
    """A worker and `orchestrator produce` on ``extra_env``'s connection: one event in, its action out."""
    w = WorkerProcess(tmp_path, extra_env=extra_env).start()
    try:
        customer = f"sec-{uuid.uuid4().hex[:8]}"
        path = tmp_path / "e.jsonl"
        path.write_bytes(dumps(event(customer, "signup.completed", props={"plan": "pro"})) + b"\n")
        subprocess.run([sys.executable, "-m", "orchestrator", "produce", str(path)], env=w.env, check=True,
                       capture_output=True, timeout=60)           # the console script on that connection too
        records = await read_all([w.topic("actions.email")],
                                 until=lambda rs: any(r["key"] == customer for r in rs))
        assert [r["value"]["template"] for r in records if r["key"] == customer] == ["welcome-1"]
    finally:
        w.stop()
    return w


async def test_worker_and_producer_authenticate_with_scram_and_never_log_the_password(tmp_path):
    password = os.environ.get("ORCH_TEST_SCRAM_PASSWORD", SCRAM_PASSWORD)
    w = await round_trip(tmp_path, scram_env(password))
    assert password not in w.log_path.read_text(errors="replace")


def test_a_wrong_password_is_one_clear_error(tmp_path):
    env = {**os.environ, **scram_env("not-the-password"), "ORCH_TOPIC_PREFIX": f"sec-{uuid.uuid4().hex[:6]}",
           "ORCH_DATA_DIR": str(tmp_path / "d")}
    result = subprocess.run([sys.executable, "-m", "orchestrator", "worker"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert "authentication failed" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert "not-the-password" not in result.stderr + result.stdout


async def test_plain_client_cannot_use_the_scram_listener_unauthenticated():
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError
    producer = AIOKafkaProducer(bootstrap_servers=scram_bootstrap(), request_timeout_ms=5000,
                                metadata_max_age_ms=5000)
    with pytest.raises((KafkaError, OSError, ConnectionError)):
        await producer.start()
        await produce("never", [])
    await producer.stop()


# --------------------------------------------------------------------------- TLS (port + 3)
def tls_env(cafile: str) -> dict[str, str]:
    explicit = os.environ.get("ORCH_TEST_TLS_BOOTSTRAP")
    if explicit:
        bootstrap = explicit
    elif os.environ.get("ORCH_BOOTSTRAP"):
        pytest.skip("ORCH_BOOTSTRAP points at an external cluster: set ORCH_TEST_TLS_BOOTSTRAP to its TLS "
                    "listener (and ORCH_TEST_TLS_CAFILE) to run this test")
    else:
        host, _, port = BOOTSTRAP.rpartition(":")
        bootstrap = f"{host}:{int(port) + 3}"
    return {"ORCH_BOOTSTRAP": bootstrap, "ORCH_KAFKA_SECURITY_PROTOCOL": "SSL", "ORCH_KAFKA_SSL_CAFILE": cafile}


def local_ca() -> str:
    from orchestrator.localkafka import tls_ca_file
    return os.environ.get("ORCH_TEST_TLS_CAFILE") or str(tls_ca_file())


async def test_worker_and_producer_talk_tls_and_verify_the_broker(tmp_path):
    await round_trip(tmp_path, tls_env(local_ca()))


def test_an_untrusted_broker_certificate_is_one_clear_error(tmp_path):
    # Another self-signed certificate for localhost, made the same way as the broker's: it is not
    # the one that signed the broker's, so trusting it must not be enough.
    from orchestrator.localkafka.config import BrokerFiles
    from orchestrator.localkafka.install import require_java
    from orchestrator.localkafka.security import ensure_tls
    files = BrokerFiles(tmp_path)
    assert ensure_tls(require_java(), files) is not None, "no keytool next to java"
    other_ca = str(files.ca)
    env = {**os.environ, **tls_env(other_ca), "ORCH_TOPIC_PREFIX": f"tls-{uuid.uuid4().hex[:6]}",
           "ORCH_DATA_DIR": str(tmp_path / "d")}
    result = subprocess.run([sys.executable, "-m", "orchestrator", "worker"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert f"{other_ca} does not trust" in result.stderr and "ORCH_KAFKA_SSL_CAFILE" in result.stderr
    assert "Traceback" not in result.stderr
