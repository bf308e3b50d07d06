"""The dev broker's TLS certificate and SCRAM user, so clients can test both on every run."""

from __future__ import annotations

import contextlib
import logging
import subprocess
from pathlib import Path

from orchestrator.errors import LocalKafkaError
from orchestrator.localkafka.config import TLS_STORE_PASSWORD, BrokerFiles, home_dir

log = logging.getLogger("orchestrator.localkafka")

SCRAM_USER = "orch"
SCRAM_PASSWORD = "orch-dev-secret"      # a dev broker on loopback only; documented in the README


def ensure_tls(java: str, files: BrokerFiles) -> Path | None:
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
    return BrokerFiles(home_dir()).ca


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
